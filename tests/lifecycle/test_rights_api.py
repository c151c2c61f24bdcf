"""A person's rights over the API: delete any item now, receipts, holds, account deletion, export, metrics."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import zipfile
from datetime import datetime, timedelta

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from petportrait.accounts import service as accounts_service
from petportrait.accounts.models import Role
from petportrait.clock import Clock
from petportrait.db import session_scope
from petportrait.lifecycle import sweeper
from petportrait.pets.models import Pet
from petportrait.retention import audit
from petportrait.retention.models import AuditEntry
from petportrait.retention.receipt_check import check_receipt
from petportrait.web.app import Services, create_app
from tests.conftest import PASSWORD, pet_photos
from tests.lifecycle.helpers import DAY, add_model, add_render

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    b"\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7V\xa3\xd5\x00\x00\x00\x00IEND\xaeB`\x82"
)


def admin_headers(client: TestClient, services: Services) -> dict[str, str]:
    with session_scope(services.session_factory) as session:
        accounts_service.create_user(session, email="admin@example.com", password=PASSWORD, role=Role.ADMIN)
    token = client.post("/api/v1/auth/token", json={"email": "admin@example.com", "password": PASSWORD})
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def new_pet(client: TestClient, headers: dict[str, str], name: str = "Rex") -> str:
    response = client.post("/api/v1/pets", json={"name": name, "species": "dog"}, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def upload(
    client: TestClient, headers: dict[str, str], pet_id: str, photo: str, index: int
) -> dict[str, str]:
    path = pet_photos(photo)[index]
    response = client.post(
        f"/api/v1/pets/{pet_id}/photos",
        headers=headers,
        files=[("files", (path.name, path.read_bytes(), "image/jpeg"))],
    )
    assert response.status_code == 201, response.text
    photo_out: dict[str, str] = response.json()["results"][0]["photo"]
    return photo_out


def portraits_of(services: Services, pet_id: str, at: datetime) -> tuple[str, str, str]:
    """A model and a render of the pet, as finished jobs write them: (model_id, render_id, render key)."""
    with session_scope(services.session_factory) as session:
        pet = session.get(Pet, pet_id)
        assert pet is not None
        model = add_model(session, services.blobs, pet, at=at)
        render = add_render(session, services.blobs, pet, at=at, model_id=model.id, data=PNG)
        return model.id, render.id, str(render.storage_key)


def sweep(services: Services, at: datetime) -> sweeper.SweepReport:
    return sweeper.sweep_once(services.session_factory, services.blobs, now=at, settings=services.settings)


def test_a_person_deletes_any_item_at_once_and_sees_the_receipts(
    client: TestClient, alice: dict[str, str], bob: dict[str, str], services: Services, now: datetime
) -> None:
    pet_id = new_pet(client, alice)
    photo = upload(client, alice, pet_id, "cat", 0)
    model_id, render_id, render_key = portraits_of(services, pet_id, now)

    for kind, item_id in (("photo", photo["id"]), ("model", model_id), ("render", render_id)):
        refused = client.delete(f"/api/v1/me/items/{kind}/{item_id}", headers=bob)
        assert refused.status_code == 404 and refused.json()["code"] == f"{kind}_not_found"
    assert client.delete(f"/api/v1/photos/{photo['id']}", headers=alice).status_code == 204
    for kind, item_id in (("model", model_id), ("render", render_id)):
        receipt = client.delete(f"/api/v1/me/items/{kind}/{item_id}", headers=alice)
        assert receipt.status_code == 200, receipt.text
        assert receipt.json()["kind"] == kind and receipt.json()["reason"] == "owner_deleted"
    assert client.delete("/api/v1/me/items/thumbnail/x", headers=alice).json()["code"] == "unknown_kind"

    assert [b.key for b in services.blobs.list("")] == []
    receipts = client.get("/api/v1/me/deletions", headers=alice).json()["items"]
    assert sorted((r["kind"], r["id"]) for r in receipts) == sorted(
        [("photo", photo["id"]), ("model", model_id), ("render", render_id)]
    )
    for receipt in receipts:
        assert receipt["reason"] == "owner_deleted" and datetime.fromisoformat(receipt["purged_at"]) == now
    photo_receipt = next(r for r in receipts if r["kind"] == "photo")
    # the receipt keeps a fingerprint under the account's key, never the photo's hash
    assert photo_receipt["fingerprint"].startswith("hmac-sha256:")
    assert photo["sha256"] not in json.dumps(receipts)
    assert photo_receipt["expires_at"] == photo["expires_at"]
    assert client.get("/api/v1/me/deletions", headers=bob).json()["items"] == []
    assert len(client.get("/api/v1/me/deletions?limit=1", headers=alice).json()["items"]) == 1
    # each deletion receipt names a receipt of the transparency log that anyone can check offline
    for receipt in receipts:
        logged = client.get(receipt["audit_receipt"], headers=alice).json()
        assert logged["entry"]["subject_id"] == receipt["id"] and logged["entry"]["action"] == "item.deleted"
        check_receipt(logged)
    with services.session_factory() as session:
        deleted = session.scalars(
            select(AuditEntry.subject_id).where(AuditEntry.action == "item.deleted")
        ).all()
        assert sorted(deleted) == sorted([photo["id"], model_id, render_id])
        assert not services.blobs.exists(render_key)


def test_reading_a_photo_is_audited_with_its_purpose(
    client: TestClient, alice: dict[str, str], services: Services
) -> None:
    pet_id = new_pet(client, alice)
    photo = upload(client, alice, pet_id, "dog", 0)
    assert client.get(photo["content_url"], headers=alice).status_code == 200
    with services.session_factory() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "photo.read")).one()
        assert (entry.subject_id, entry.purpose) == (photo["id"], "owner_view")
        assert entry.actor_id == entry.owner_id
        assert audit.verify(session).ok


def test_a_legal_hold_suspends_deletion_until_it_is_released(
    client: TestClient, alice: dict[str, str], bob: dict[str, str], services: Services, frozen_clock: Clock
) -> None:
    admin = admin_headers(client, services)
    pet_id = new_pet(client, alice)
    photo = upload(client, alice, pet_id, "dog", 1)
    start = frozen_clock.now()
    body = {
        "scope": "item",
        "kind": "photo",
        "item_id": photo["id"],
        "reason": "court order 12/345",
        "ends_at": (start + 90 * DAY).isoformat(),
    }
    assert client.post("/api/v1/admin/holds", json=body, headers=bob).status_code == 404
    assert client.get("/api/v1/admin/holds", headers=alice).status_code == 404
    placed = client.post("/api/v1/admin/holds", json=body, headers=admin)
    assert placed.status_code == 201, placed.text
    hold = placed.json()
    assert hold["active"] and hold["reason"] == "court order 12/345"

    refused = client.delete(f"/api/v1/photos/{photo['id']}", headers=alice)
    assert refused.status_code == 409 and refused.json()["code"] == "legal_hold"
    assert client.delete(f"/api/v1/pets/{pet_id}", headers=alice).json()["code"] == "legal_hold"

    frozen_clock.advance(31 * DAY)
    report = sweep(services, frozen_clock.now())
    assert report.total_purged == 0
    assert services.blobs.exists(f"photos/{hold['owner_id']}/{pet_id}/{photo['id']}.jpg")
    gone = client.get(photo["content_url"], headers=alice)  # held, but hidden from the person once expired
    assert gone.status_code == 410 and gone.json()["code"] == "photo_expired"
    listed = client.get("/api/v1/admin/holds?active=true", headers=admin).json()["items"]
    assert [h["id"] for h in listed] == [hold["id"]]

    released = client.post(
        f"/api/v1/admin/holds/{hold['id']}/release", json={"note": "case closed"}, headers=admin
    )
    assert released.status_code == 200 and not released.json()["active"]
    again = client.post(f"/api/v1/admin/holds/{hold['id']}/release", headers=admin)
    assert again.status_code == 409 and again.json()["code"] == "hold_ended"
    assert sweep(services, frozen_clock.now()).purged == {"photo": 1}
    with services.session_factory() as session:
        actions = session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)).all()
    assert actions == ["hold.placed", "hold.released", "item.deleted"]


def test_a_hold_needs_a_reason_a_future_end_and_an_existing_subject(
    client: TestClient, alice: dict[str, str], services: Services, now: datetime
) -> None:
    admin = admin_headers(client, services)
    future = (now + DAY).isoformat()
    cases = [
        ({"scope": "item", "kind": "photo", "item_id": "nope", "reason": "r", "ends_at": future}, 404),
        ({"scope": "item", "kind": "photo", "reason": "r", "ends_at": future}, 422),
        ({"scope": "account", "user_id": "nope", "reason": "r", "ends_at": future}, 404),
        ({"scope": "account", "user_id": "x", "reason": "r", "ends_at": (now - DAY).isoformat()}, 422),
        ({"scope": "account", "user_id": "x", "reason": "  ", "ends_at": future}, 422),
    ]
    for body, status in cases:
        assert client.post("/api/v1/admin/holds", json=body, headers=admin).status_code == status, body


def test_deleting_the_account_signs_out_and_the_next_sweep_removes_everything(
    client: TestClient, alice: dict[str, str], bob: dict[str, str], services: Services, now: datetime
) -> None:
    pet_id = new_pet(client, alice)
    upload(client, alice, pet_id, "cat", 1)
    upload(client, alice, pet_id, "cat", 2)
    portraits_of(services, pet_id, now)
    bob_pet = new_pet(client, bob)
    upload(client, bob, bob_pet, "dog", 2)
    bob_blobs = [b.key for b in services.blobs.list("") if f"/{bob_pet}/" in b.key]

    response = client.delete("/api/v1/me", headers={**alice, "X-Current-Password": PASSWORD})
    assert response.status_code == 202, response.text
    body = response.json()
    pending = {kind: count for kind, count in body["items_pending"].items() if count}
    assert pending == {"render": 1, "model": 1, "photo": 2} and body["items_held"] == 0
    assert client.get("/api/v1/me", headers=alice).status_code == 401

    report = sweep(services, now + timedelta(seconds=60))
    assert report.purged == {"render": 1, "model": 1, "photo": 2}
    assert [b.key for b in services.blobs.list("")] == bob_blobs
    assert len(client.get(f"/api/v1/pets/{bob_pet}/photos", headers=bob).json()["items"]) == 1
    with services.session_factory() as session:
        assert session.get(Pet, pet_id) is None
        assert session.scalars(select(AuditEntry.action).where(AuditEntry.action == "account.deleted")).one()


def test_an_account_hold_keeps_an_erased_accounts_items_until_it_ends(
    client: TestClient, alice: dict[str, str], services: Services, now: datetime, frozen_clock: Clock
) -> None:
    admin = admin_headers(client, services)
    pet_id = new_pet(client, alice)
    upload(client, alice, pet_id, "dog3", 0)
    alice_id = client.get("/api/v1/me", headers=alice).json()["id"]
    hold = {
        "scope": "account",
        "user_id": alice_id,
        "reason": "litigation",
        "ends_at": (now + 10 * DAY).isoformat(),
    }
    assert client.post("/api/v1/admin/holds", json=hold, headers=admin).status_code == 201
    reauth = {**alice, "X-Current-Password": PASSWORD}
    assert client.delete("/api/v1/me", headers=reauth).json()["items_held"] == 1
    assert sweep(services, now + DAY).total_purged == 0
    assert sweep(services, now + 10 * DAY).purged == {"photo": 1}


def test_export_contains_exactly_what_the_person_holds(
    client: TestClient, alice: dict[str, str], bob: dict[str, str], services: Services, frozen_clock: Clock
) -> None:
    pet_id = new_pet(client, alice, "Mittens")
    first = upload(client, alice, pet_id, "cat", 0)
    deleted = upload(client, alice, pet_id, "cat", 1)
    frozen_clock.advance(10 * DAY)
    kept = upload(client, alice, pet_id, "cat", 2)
    assert client.delete(f"/api/v1/photos/{deleted['id']}", headers=alice).status_code == 204
    frozen_clock.advance(21 * DAY)  # the first photo has expired; the kept one has not
    _, render_id, render_key = portraits_of(services, pet_id, frozen_clock.now())
    bob_pet = new_pet(client, bob, "Bobby")
    bob_photo = upload(client, bob, bob_pet, "dog", 3)
    portraits_of(services, bob_pet, frozen_clock.now())
    sweep(services, frozen_clock.now())

    response = client.post("/api/v1/me/export", headers=alice)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert "attachment" in response.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    names = set(archive.namelist())
    kept_file = f"photos/{pet_id}/{kept['id']}.jpg"
    images = {kept_file, f"renders/{render_id}.png"}
    assert {n for n in names if not n.endswith(".json")} == images | {"index.html", "index.csv"}
    # the readable index names each photo and portrait with its pet, its file and its dates
    rows = list(csv.DictReader(io.StringIO(archive.read("index.csv").decode("utf-8-sig"))))
    assert [(r["kind"], r["pet"], r["file"]) for r in rows if r["file"]] == [
        ("photo", "Mittens", kept_file),
        ("portrait", "Mittens", f"renders/{render_id}.png"),
    ]
    assert all(r["made"] and r["deleted_on"] for r in rows) and [r["kind"] for r in rows].count("model") == 1
    page = archive.read("index.html").decode()
    assert f'<img src="{kept_file}"' in page and "Mittens" in page and '<html lang="en">' in page
    assert archive.read(kept_file) == client.get(kept["content_url"], headers=alice).content
    assert archive.read(f"renders/{render_id}.png") == services.blobs.get_bytes(render_key) == PNG

    data = {n.removesuffix(".json"): json.loads(archive.read(n)) for n in names if n.endswith(".json")}
    assert data["account"]["email"] == "alice@example.com"
    assert [p["name"] for p in data["pets"]] == ["Mittens"]
    assert [p["id"] for p in data["photos"]] == [kept["id"]]
    assert [r["id"] for r in data["renders"]] == [render_id] and len(data["models"]) == 1
    receipts = {r["id"]: r["reason"] for r in data["deletion_receipts"]}
    assert receipts == {deleted["id"]: "owner_deleted", first["id"]: "expired"}
    assert data["consent_receipts"] == [] and data["licences"] == []
    assert any(e["action"] == "item.deleted" for e in data["access_log"])
    manifest = data["manifest"]
    assert manifest["format"] == "petportrait-export/1" and manifest["counts"]["photos"] == 1
    for entry in manifest["files"]:
        assert hashlib.sha256(archive.read(entry["path"])).hexdigest() == entry["sha256"]

    everything = b"".join(archive.read(n) for n in names)
    bob_id = client.get("/api/v1/me", headers=bob).json()["id"]
    for secret in (bob_id, bob_pet, bob_photo["id"], "bob@example.com", "Bobby"):
        assert secret.encode() not in everything, secret
    with services.session_factory() as session:
        reads = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "photo.read", AuditEntry.purpose == "export")
        ).all()
        assert [r.subject_id for r in reads] == [kept["id"]]


def test_metrics_show_items_by_kind_and_state_and_sweep_durations(
    client: TestClient, alice: dict[str, str], services: Services, frozen_clock: Clock
) -> None:
    pet_id = new_pet(client, alice)
    upload(client, alice, pet_id, "dog2", 0)
    portraits_of(services, pet_id, frozen_clock.now())
    frozen_clock.advance(7 * DAY + timedelta(seconds=90))

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        response = client.get("/metrics")
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
        values = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return values

    before = scrape()
    assert before[("petportrait_retention_items", (("kind", "model"), ("state", "due")))] == 1
    assert before[("petportrait_retention_items", (("kind", "photo"), ("state", "live")))] == 1
    assert before[("petportrait_retention_oldest_overdue_seconds", (("kind", "model"),))] == 90
    assert before[("petportrait_retention_oldest_overdue_seconds", (("kind", "photo"),))] == 0
    sweep(services, frozen_clock.now())
    after = scrape()
    assert after[("petportrait_retention_items", (("kind", "model"), ("state", "due")))] == 0
    assert after[("petportrait_retention_items", (("kind", "model"), ("state", "deleted")))] == 1
    assert after[("petportrait_retention_oldest_overdue_seconds", (("kind", "model"),))] == 0
    assert after[("petportrait_sweep_last_purged_items", ())] == 1
    assert after[("petportrait_sweep_duration_seconds_count", ())] >= 1
    assert ("petportrait_sweep_last_duration_seconds", ()) in after


def test_metrics_answer_only_the_scrapers_token_when_one_is_set(services: Services) -> None:
    security = services.settings.security.model_copy(update={"metrics_token": "s3cret-scraper-token"})
    settings = services.settings.model_copy(update={"security": security})
    guarded = dataclasses.replace(services, settings=settings)
    wrong: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic s3cret-scraper-token"},
    ]
    with TestClient(create_app(services=guarded), raise_server_exceptions=False) as client:
        for headers in wrong:
            refused = client.get("/metrics", headers=headers)
            assert refused.status_code == 401, headers
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["code"] == "metrics_token_required"
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert "petportrait_" not in refused.text
        allowed = client.get("/metrics", headers={"Authorization": "Bearer s3cret-scraper-token"})
        assert allowed.status_code == 200
        assert "petportrait_retention_items" in allowed.text


def test_the_api_lists_the_lifecycle_paths(client: TestClient) -> None:
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    for path in ["/api/v1/me/deletions", "/api/v1/me/export", "/api/v1/me", "/api/v1/admin/holds"]:
        assert path in paths, path
    assert "delete" in paths["/api/v1/me"]
