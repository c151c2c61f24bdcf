"""Idempotency-Key through HTTP: a retried create creates once; a reused key is refused; a busy key waits."""

from __future__ import annotations

import io
import threading
import uuid
from datetime import timedelta
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from petportrait import idempotency
from petportrait.accounts.models import User
from petportrait.clock import Clock
from petportrait.idempotency import IdempotencyRecord, sweep_idempotency
from petportrait.pets.models import Pet, Photo
from petportrait.web.app import Services
from petportrait.web.idempotency import fingerprint
from tests.canary import database_text
from tests.conftest import pet_photos, sign_up
from tests.live import live_server


def _count(services: Services, model: type[Any]) -> int:
    with services.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def test_a_retried_pet_create_creates_once_and_answers_the_same(
    client: TestClient, services: Services, alice: dict[str, str]
) -> None:
    headers = {**alice, **_key()}
    first = client.post("/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers=headers)
    again = client.post("/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.headers
    assert _count(services, Pet) == 1
    # Without a key, a POST still creates each time (the header is opt-in).
    client.post("/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers=alice)
    assert _count(services, Pet) == 2


def test_the_same_key_with_a_different_body_or_path_is_refused(
    client: TestClient, services: Services, alice: dict[str, str]
) -> None:
    headers = {**alice, **_key()}
    assert (
        client.post("/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers=headers).status_code
        == 201
    )
    other = client.post("/api/v1/pets", json={"name": "Max", "species": "dog"}, headers=headers)
    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["code"] == "idempotency_key_reused"
    elsewhere = client.post("/api/v1/me/export", headers=headers)
    assert elsewhere.status_code == 422 and elsewhere.json()["code"] == "idempotency_key_reused"
    assert _count(services, Pet) == 1


def test_keys_are_per_account(
    client: TestClient, services: Services, alice: dict[str, str], bob: dict[str, str]
) -> None:
    """Bob using Alice's key neither sees her answer nor is refused: his request is his own."""
    key = _key()
    mine = client.post("/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers={**alice, **key})
    his = client.post("/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers={**bob, **key})
    assert mine.status_code == his.status_code == 201
    assert mine.json()["id"] != his.json()["id"]
    assert "idempotent-replayed" not in his.headers
    assert client.get("/api/v1/pets", headers=bob).json()["items"][0]["id"] == his.json()["id"]
    assert _count(services, Pet) == 2


def test_credential_routes_keep_no_row_whatever_the_key(client: TestClient, services: Services) -> None:
    """Sign-up, sign-in and password changes carry a password: nothing of them is kept, not even a keyed
    fingerprint, and a retry is answered afresh (sign-up answers alike whether the email exists)."""
    key = _key()
    body = {"email": "carol@example.com", "password": "a long password!"}
    first = client.post("/api/v1/accounts", json=body, headers=key)
    again = client.post("/api/v1/accounts", json=body, headers=key)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and "idempotent-replayed" not in again.headers
    signed_in = client.post("/api/v1/auth/token", json=body, headers=key)
    assert signed_in.status_code == 200, signed_in.text
    token = signed_in.json()["access_token"]
    auth = {"Authorization": f"Bearer {token}", **_key()}
    changed = client.post(
        "/api/v1/me/password",
        json={"current_password": "a long password!", "new_password": "another long password!"},
        headers=auth,
    )
    assert changed.status_code == 200, changed.text
    assert _count(services, IdempotencyRecord) == 0
    assert _count(services, User) == 1
    dump = database_text(services.engine)
    assert token not in dump and "carol@example.com" in dump  # the account's own row, nothing else


def test_a_fingerprint_is_keyed_by_the_secret_key() -> None:
    """The same request under two secret keys has two fingerprints, neither a bare SHA-256 of the body."""
    import hashlib

    body = b'{"name": "Rex"}'
    prints = [
        fingerprint(
            io.BytesIO(body), key=k, method="POST", path="/p", query="", content_type="application/json"
        )
        for k in (b"one", b"two")
    ]
    assert prints[0] != prints[1]
    plain = hashlib.sha256(b"POST\n/p\n\napplication/json\n" + body).hexdigest()
    assert plain not in prints


def test_an_answer_with_a_secret_keeps_no_body_and_a_replay_says_so(
    client: TestClient, services: Services, alice: dict[str, str]
) -> None:
    headers = {**alice, **_key()}
    body = {"url": "https://hooks.example/receive", "events": ["render.ready"]}
    first = client.post("/api/v1/webhooks", json=body, headers=headers)
    assert first.status_code == 201, first.text
    secret = first.json()["secret"]
    again = client.post("/api/v1/webhooks", json=body, headers=headers)
    assert again.status_code == 410 and again.json()["code"] == "idempotency_answer_not_kept"
    assert len(client.get("/api/v1/webhooks", headers=alice).json()["items"]) == 1  # made once
    with services.session_factory() as session:
        (record,) = session.scalars(select(IdempotencyRecord)).all()
        assert record.body is None and not record.answer_kept
        assert secret.encode() not in (record.body or b"")


def test_a_retried_upload_with_a_new_multipart_boundary_is_the_same_request(
    client: TestClient, services: Services, alice: dict[str, str]
) -> None:
    pet = client.post("/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers=alice).json()
    headers = {**alice, **_key()}
    photos = pet_photos("dog")[:2]

    def files() -> list[tuple[str, tuple[str, bytes, str]]]:
        return [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]

    first = client.post(f"/api/v1/pets/{pet['id']}/photos", files=files(), headers=headers)
    again = client.post(f"/api/v1/pets/{pet['id']}/photos", files=files(), headers=headers)
    assert first.status_code == again.status_code == 201, again.text
    assert first.request.headers["content-type"] != again.request.headers["content-type"]  # new boundary
    assert again.json() == first.json()
    assert _count(services, Photo) == 2
    one_less = client.post(f"/api/v1/pets/{pet['id']}/photos", files=files()[:1], headers=headers)
    assert one_less.status_code == 422 and one_less.json()["code"] == "idempotency_key_reused"


def test_a_retried_training_and_render_create_one_job_each(
    client: TestClient, services: Services, alice: dict[str, str]
) -> None:
    pet = client.post("/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers=alice).json()
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in pet_photos("dog")[:2]]
    assert client.post(f"/api/v1/pets/{pet['id']}/photos", files=files, headers=alice).status_code == 201
    train_key = {**alice, **_key()}
    first = client.post(f"/api/v1/pets/{pet['id']}/models", headers=train_key)
    again = client.post(f"/api/v1/pets/{pet['id']}/models", headers=train_key)
    assert first.status_code == again.status_code == 202, first.text
    assert again.json()["model"]["id"] == first.json()["model"]["id"]
    assert len(client.get(f"/api/v1/pets/{pet['id']}/models", headers=alice).json()["items"]) == 1
    model_id = first.json()["model"]["id"]
    render_key = {**alice, **_key()}
    body = {"style": "oil_painting", "count": 2}
    r1 = client.post(f"/api/v1/models/{model_id}/renders", json=body, headers=render_key)
    r2 = client.post(f"/api/v1/models/{model_id}/renders", json=body, headers=render_key)
    assert r1.status_code == r2.status_code == 202, r1.text
    assert [r["id"] for r in r2.json()["renders"]] == [r["id"] for r in r1.json()["renders"]]
    assert len(client.get("/api/v1/renders", headers=alice).json()["items"]) == 2
    refused = client.post(f"/api/v1/models/{model_id}/renders", json={**body, "count": 3}, headers=render_key)
    assert refused.status_code == 422 and refused.json()["code"] == "idempotency_key_reused"


def test_a_request_with_the_key_in_flight_gets_409_with_retry_after(
    client: TestClient, services: Services, alice: dict[str, str]
) -> None:
    """Another process holds the key (its row is claimed, not answered): the duplicate must not run."""
    body = b'{"name":"Rex","species":"dog"}'
    me = client.get("/api/v1/me", headers=alice).json()
    print_ = fingerprint(
        io.BytesIO(body),
        key=services.settings.derived_key("idempotency-fingerprint"),
        method="POST",
        path="/api/v1/pets",
        query="",
        content_type="application/json",
    )
    with services.session_factory() as session:
        claimed = idempotency.claim(
            session,
            scope=idempotency.scope_for(me["id"], print_),
            key="busy-key",
            fingerprint=print_,
            method="POST",
            path="/api/v1/pets",
            owner_id=me["id"],
        )
    assert isinstance(claimed, idempotency.Claimed)
    headers = {**alice, "Idempotency-Key": "busy-key", "content-type": "application/json"}
    busy = client.post("/api/v1/pets", content=body, headers=headers)
    assert busy.status_code == 409
    assert busy.json()["code"] == "idempotency_key_in_flight"
    assert busy.headers["retry-after"] == "1"
    assert _count(services, Pet) == 0


def test_a_claim_whose_process_died_is_taken_over_after_five_minutes(
    client: TestClient, services: Services, alice: dict[str, str], frozen_clock: Clock
) -> None:
    body = b'{"name":"Rex","species":"dog"}'
    me = client.get("/api/v1/me", headers=alice).json()
    print_ = fingerprint(
        io.BytesIO(body),
        key=services.settings.derived_key("idempotency-fingerprint"),
        method="POST",
        path="/api/v1/pets",
        query="",
        content_type="application/json",
    )
    with services.session_factory() as session:
        idempotency.claim(
            session,
            scope=idempotency.scope_for(me["id"], print_),
            key="orphan",
            fingerprint=print_,
            method="POST",
            path="/api/v1/pets",
            owner_id=me["id"],
        )
    headers = {**alice, "Idempotency-Key": "orphan", "content-type": "application/json"}
    assert client.post("/api/v1/pets", content=body, headers=headers).status_code == 409
    frozen_clock.advance(idempotency.IN_FLIGHT_TIMEOUT + timedelta(seconds=1))
    taken = client.post("/api/v1/pets", content=body, headers=headers)
    assert taken.status_code == 201
    assert _count(services, Pet) == 1


def test_concurrent_duplicates_over_real_http_create_once(services: Services) -> None:
    """Eight threads send the same create with the same key at once: one pet; every answer is that pet
    (first or replayed) or 409 in flight."""
    with live_server(services) as base, httpx.Client(base_url=base, timeout=30) as http:
        response = http.post(
            "/api/v1/accounts", json={"email": "race@example.com", "password": "a long password!"}
        )
        assert response.status_code == 202
        token = http.post(
            "/api/v1/auth/token", json={"email": "race@example.com", "password": "a long password!"}
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", **_key()}
        barrier = threading.Barrier(8)
        answers: list[httpx.Response] = []
        lock = threading.Lock()

        def send() -> None:
            with httpx.Client(base_url=base, timeout=30) as own:
                barrier.wait()
                answer = own.post("/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers=headers)
            with lock:
                answers.append(answer)

        threads = [threading.Thread(target=send) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert len(answers) == 8
    assert _count(services, Pet) == 1
    created = [a for a in answers if a.status_code == 201]
    busy = [a for a in answers if a.status_code == 409]
    assert len(created) + len(busy) == 8, [a.text for a in answers]
    assert created and len({a.json()["id"] for a in created}) == 1
    assert sum(1 for a in created if "idempotent-replayed" not in a.headers) == 1
    assert all(a.json()["code"] == "idempotency_key_in_flight" for a in busy)


def test_keys_answer_for_24_hours_then_are_swept(
    client: TestClient, services: Services, alice: dict[str, str], frozen_clock: Clock
) -> None:
    headers = {**alice, **_key()}
    first = client.post("/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers=headers)
    frozen_clock.advance(timedelta(hours=23))
    assert (
        client.post("/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers=headers).json()
        == first.json()
    )
    with services.session_factory() as session:
        assert sweep_idempotency(session, frozen_clock.now()) == 0
        session.commit()
    frozen_clock.advance(timedelta(hours=1, seconds=1))
    with services.session_factory() as session:
        assert sweep_idempotency(session, frozen_clock.now()) == 1
        session.commit()
    assert _count(services, IdempotencyRecord) == 0
    later = client.post("/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers=headers)
    assert later.status_code == 201 and later.json()["id"] != first.json()["id"]
    # An unswept row past its 24 hours is not replayed either.
    frozen_clock.advance(timedelta(hours=25))
    assert (
        client.post("/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers=headers).status_code
        == 201
    )
    assert _count(services, Pet) == 3


def test_answers_a_retry_may_change_are_not_kept(
    client: TestClient, services: Services, alice: dict[str, str]
) -> None:
    key = _key()
    wrong = client.post(
        "/api/v1/pets",
        json={"name": "Rex", "species": "dog"},
        headers={"Authorization": "Bearer nope", **key},
    )
    assert wrong.status_code == 401
    invalid = client.post("/api/v1/pets", json={"name": "", "species": "dog"}, headers={**alice, **key})
    assert invalid.status_code == 422 and invalid.json()["code"] == "validation_error"
    replayed = client.post("/api/v1/pets", json={"name": "", "species": "dog"}, headers={**alice, **key})
    assert replayed.status_code == 422 and replayed.headers.get("idempotent-replayed") == "true"
    assert _count(services, IdempotencyRecord) == 1


def test_a_bad_key_is_a_problem_and_other_methods_ignore_the_header(
    client: TestClient, alice: dict[str, str]
) -> None:
    for bad in ("x" * 256, " leading-space", "tab\tinside"):
        response = client.post(
            "/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers={**alice, "Idempotency-Key": bad}
        )
        assert response.status_code == 400, bad
        assert response.json()["code"] == "invalid_idempotency_key"
    listed = client.get("/api/v1/pets", headers={**alice, "Idempotency-Key": "whatever"})
    assert listed.status_code == 200


def test_an_export_is_never_kept_and_a_support_case_is_created_once(
    client: TestClient, services: Services, alice: dict[str, str]
) -> None:
    """An export carries file bytes: its answer is not kept (a retry makes a fresh one)."""
    headers = {**alice, **_key()}
    first = client.post("/api/v1/me/export", headers=headers)
    again = client.post("/api/v1/me/export", headers=headers)
    assert first.status_code == again.status_code == 200
    assert "idempotent-replayed" not in again.headers
    assert _count(services, IdempotencyRecord) == 0
    pet = client.post("/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers=alice).json()
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in pet_photos("dog")[:1]]
    photo = client.post(f"/api/v1/pets/{pet['id']}/photos", files=files, headers=alice).json()
    photo_id = photo["results"][0]["photo"]["id"]
    case = {"subject": "my photo looks odd", "items": [{"kind": "photo", "id": photo_id}]}
    key = {**alice, **_key()}
    c1 = client.post("/api/v1/me/support-cases", json=case, headers=key)
    c2 = client.post("/api/v1/me/support-cases", json=case, headers=key)
    assert c1.status_code == c2.status_code == 201, c1.text
    assert c1.json() == c2.json()
    assert len(client.get("/api/v1/me/support-cases", headers=alice).json()["items"]) == 1


def test_stored_answers_end_with_the_items_and_pets_they_name(
    client: TestClient, services: Services, alice: dict[str, str]
) -> None:
    """Deleting a photo (or a pet) deletes, in the same transaction, every stored answer that names it."""
    pet = client.post(
        "/api/v1/pets", json={"name": "Canaryname", "species": "dog"}, headers={**alice, **_key()}
    )
    pet_id = pet.json()["id"]
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in pet_photos("dog")[:1]]
    upload = client.post(f"/api/v1/pets/{pet_id}/photos", files=files, headers={**alice, **_key()})
    photo_id = upload.json()["results"][0]["photo"]["id"]
    other = client.post("/api/v1/pets", json={"name": "Other", "species": "cat"}, headers={**alice, **_key()})
    assert _count(services, IdempotencyRecord) == 3
    assert client.delete(f"/api/v1/photos/{photo_id}", headers=alice).status_code == 204
    assert _count(services, IdempotencyRecord) == 2  # the upload's answer named the photo
    assert client.delete(f"/api/v1/pets/{pet_id}", headers=alice).status_code == 204
    with services.session_factory() as session:
        left = session.scalars(select(IdempotencyRecord)).all()
        assert [r.path for r in left] == ["/api/v1/pets"]
        assert b"Canaryname" not in (left[0].body or b"") and other.json()["id"].encode() in (
            left[0].body or b""
        )


def test_sign_up_helper_still_works_for_others(client: TestClient) -> None:
    """The header is optional everywhere: the suite's own helpers need no key."""
    assert sign_up(client, "dave@example.com")["Authorization"].startswith("Bearer ")
