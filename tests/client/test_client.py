"""petportrait.client against a live server: the whole flow, retries that create once, errors, paging."""

from __future__ import annotations

import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from petportrait.client import Client, Job, Model, PetportraitError, Render
from petportrait.pets.models import Pet
from petportrait.portraits.models import PetModel
from tests.client.conftest import PASSWORD, Live
from tests.conftest import pet_photos


def _count(live: Live, model: type[Any], **where: str) -> int:
    with live.services.session_factory() as session:
        query = select(func.count()).select_from(model)
        for column, value in where.items():
            query = query.where(getattr(model, column) == value)
        return int(session.scalar(query) or 0)


class LosesFirstAnswer(httpx.HTTPTransport):
    """The network between client and server: the first answer to `method path` never arrives (the
    server did the work, then the connection died), like a mobile connection dropping at the wrong time."""

    def __init__(self, method: str, path_end: str) -> None:
        super().__init__()
        self.method, self.path_end = method, path_end
        self.lost = 0
        self.keys: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == self.method and request.url.path.endswith(self.path_end):
            self.keys.append(request.headers.get("idempotency-key"))
            if not self.lost:
                response.read()
                response.close()
                self.lost += 1
                raise httpx.ReadError("connection reset by peer", request=request)
        return response


class Busy(httpx.HTTPTransport):
    """A proxy in front of the server that answers 503 (or 429) with Retry-After the first `times` times."""

    def __init__(self, status: int, retry_after: str, times: int = 1) -> None:
        super().__init__()
        self.status, self.retry_after, self.times = status, retry_after, times

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.times > 0 and request.method == "POST":
            self.times -= 1
            return httpx.Response(
                self.status,
                headers={"Retry-After": self.retry_after, "content-type": "application/problem+json"},
                json={"code": "overloaded", "detail": "busy", "status": self.status},
            )
        return super().handle_request(request)


class NoEventStream(httpx.HTTPTransport):
    """A proxy that does not pass server-sent events (some do not): waiting must fall back to polling."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            self.refused += 1
            return httpx.Response(502, text="Bad gateway")
        return super().handle_request(request)


def test_the_client_drives_the_whole_flow(live: Live, tmp_path: Path) -> None:
    started = time.monotonic()
    progress: list[Job] = []
    with Client(live.url) as c:
        account = c.sign_up(live.address("flow"), PASSWORD)
        assert c.token and c.me().id == account.id
        pet = c.create_pet("Rex", species="dog")
        upload = c.upload_photos(pet.id, pet_photos("dog")[:3])
        assert upload.stored == 3 and all(r.stored for r in upload.results)
        assert all(p.expires_at is not None for p in upload.photos)
        model = c.train(pet.id, wait=True, on_progress=progress.append)
        assert model.state == "ready" and model.expires_at is not None
        assert progress and progress[-1].state == "succeeded" and progress[-1].fraction == 1.0
        fractions = [j.fraction for j in progress]
        assert fractions == sorted(fractions), "progress went backwards"
        renders = c.render(model.id, style="oil_painting", count=2, wait=True)
        assert len(renders) == 2 and all(r.state == "ready" and r.expires_at for r in renders)
        saved = [c.download(r.id, tmp_path / f"rex-{i}.png") for i, r in enumerate(renders)]
        for download in saved:
            assert download.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert download.manifest_state == "Trusted" and download.licence_id
        assert [p.id for p in c.pets()] == [pet.id]
        assert {p.id for p in c.photos(pet.id)} == {p.id for p in upload.photos}
        assert [m.id for m in c.models(pet.id)] == [model.id]
        assert {r.id for r in c.renders(pet_id=pet.id)} == {r.id for r in renders}
        assert any(s["name"] == "oil_painting" for s in c.styles())
        archive = c.export(tmp_path / "export.zip")
        with zipfile.ZipFile(archive) as zf:
            assert zf.namelist()
        receipt = c.delete_item("render", renders[0].id)
        assert receipt["id"] == renders[0].id
        assert renders[0].id in {d["id"] for d in c.deletions()}
        with pytest.raises(PetportraitError) as gone:
            c.get_render(renders[0].id)
        assert gone.value.status in (404, 410)
        erasure = c.delete_account(PASSWORD)
        assert erasure.user_id == account.id and c.token is None
    elapsed = time.monotonic() - started
    print(f"\nclient flow: sign-up to erasure in {elapsed:.1f} s ({len(progress)} training progress events)")


def test_a_create_whose_answer_was_lost_is_retried_with_its_key_and_creates_once(
    live: Live, tmp_path: Path
) -> None:
    with Client(live.url) as setup:
        setup.sign_up(live.address("retry"), PASSWORD)
        token = setup.token
    lossy = LosesFirstAnswer("POST", "/pets")
    slept: list[float] = []
    with Client(live.url, token=token, transport=lossy, sleep=slept.append) as c:
        pet = c.create_pet("Rex")
        assert lossy.lost == 1 and len(lossy.keys) == 2
        assert lossy.keys[0] == lossy.keys[1] and lossy.keys[0]  # one key across the tries
        assert len(slept) == 1
        assert _count(live, Pet, id=pet.id) == 1 and [p.id for p in c.pets()] == [pet.id]
        # A second logical call is a new key: a second pet.
        assert c.create_pet("Rex").id != pet.id
    lossy_train = LosesFirstAnswer("POST", "/models")
    with Client(live.url, token=token, transport=lossy_train, sleep=slept.append) as c:
        c.upload_photos(pet.id, pet_photos("dog")[:2])
        model = c.train(pet.id)
        assert lossy_train.lost == 1
        assert _count(live, PetModel, pet_id=pet.id) == 1 and model.pet_id == pet.id


def test_429_and_503_are_retried_after_the_servers_retry_after(live: Live) -> None:
    with Client(live.url) as setup:
        setup.sign_up(live.address("busy"), PASSWORD)
        token = setup.token
    for status, header, expected in ((503, "2", 2.0), (429, "0", 0.0)):
        slept: list[float] = []
        with Client(live.url, token=token, transport=Busy(status, header), sleep=slept.append) as c:
            assert c.create_pet("Rex").name == "Rex"
        assert slept == [expected]
    slept = []
    with (
        Client(live.url, token=token, transport=Busy(503, "1", times=99), retries=2, sleep=slept.append) as c,
        pytest.raises(PetportraitError) as refused,
    ):
        c.create_pet("Rex")
    assert refused.value.status == 503 and refused.value.code == "overloaded" and slept == [1.0, 1.0]


def test_a_connection_that_never_comes_up_ends_in_one_error_after_backoff() -> None:
    slept: list[float] = []
    client = Client("http://127.0.0.1:9", retries=3, backoff=0.1, sleep=slept.append)
    with client as c, pytest.raises(PetportraitError) as failed:
        c.create_pet("Rex")
    assert failed.value.code == "connection_error" and failed.value.status is None
    assert len(slept) == 3 and slept[0] <= slept[2] * 2  # grows (with jitter)


def test_errors_carry_the_problem_code_detail_and_status(live: Live) -> None:
    with Client(live.url) as c:
        with pytest.raises(PetportraitError) as anonymous:
            c.create_pet("Rex")
        assert (anonymous.value.status, anonymous.value.code) == (401, "not_authenticated")
        c.sign_up(live.address("errors"), PASSWORD)
        with pytest.raises(PetportraitError) as missing:
            c.get_pet(uuid.uuid4().hex)
        assert missing.value.status == 404 and missing.value.code == "pet_not_found" and missing.value.detail
        with pytest.raises(PetportraitError) as wrong:
            c.sign_in("nobody@example.com", "not the password at all")
        assert wrong.value.status == 401
        pet = c.create_pet("Rex")
        rejected = c.upload_photos(pet.id, [Path(__file__)])  # not an image: per-file results, no raise
        assert rejected.stored == 0 and rejected.results[0].code == "not_an_image"


def test_the_same_key_with_a_different_body_is_refused_over_http(live: Live) -> None:
    with Client(live.url) as c:
        c.sign_up(live.address("reuse"), PASSWORD)
        headers = {"Authorization": f"Bearer {c.token}", "Idempotency-Key": str(uuid.uuid4())}
        with httpx.Client(base_url=live.url) as http:
            first = http.post("/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers=headers)
            again = http.post("/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers=headers)
            other = http.post("/api/v1/pets", json={"name": "Max", "species": "cat"}, headers=headers)
        assert first.status_code == again.status_code == 201 and first.json() == again.json()
        assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
        assert [p.name for p in c.pets()] == ["Rex"]


@dataclass
class Trained:
    token: str
    model: Model
    render: Render
    proxy: NoEventStream
    seen: list[Job]


@pytest.fixture(scope="module")
def trained_without_events(live: Live) -> Trained:
    """One training and one render, waited on through a proxy that passes no event stream."""
    proxy = NoEventStream()
    seen: list[Job] = []
    with Client(live.url, transport=proxy, poll_interval=0.2) as c:
        c.sign_up(live.address("poll"), PASSWORD)
        pet = c.create_pet("Rex")
        c.upload_photos(pet.id, pet_photos("dog")[:2])
        model = c.train(pet.id, wait=True, on_progress=seen.append)
        render = c.render(model.id, style="oil_painting", wait=True)[0]
        assert c.token
        return Trained(token=c.token, model=model, render=render, proxy=proxy, seen=seen)


def test_waiting_falls_back_to_polling_without_an_event_stream(trained_without_events: Trained) -> None:
    t = trained_without_events
    assert t.proxy.refused >= 2  # the training's and the render's streams
    assert t.model.state == "ready" and t.render.state == "ready"
    assert t.seen and t.seen[-1].state == "succeeded"


def test_lists_follow_cursor_pages_or_read_a_plain_list() -> None:
    """The list shape the service is moving to (`items` + `next_cursor`), served by a stand-in server."""
    asked: list[dict[str, str]] = []

    def server(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        asked.append(params)
        pet = {"name": "Rex", "species": "dog", "created_at": "2026-12-01T00:00:00Z"}
        if request.url.path == "/api/v1/pets":
            if params.get("cursor") is None:
                return httpx.Response(
                    200, json={"items": [{**pet, "id": "a"}, {**pet, "id": "b"}], "next_cursor": "c2"}
                )
            return httpx.Response(200, json={"items": [{**pet, "id": "c"}], "next_cursor": None})
        return httpx.Response(
            200, json=[{"id": "w1", "url": "https://example.com/hook", "events": ["render.ready"]}]
        )

    with Client("http://petportrait.test", token="pp_x", transport=httpx.MockTransport(server)) as c:
        assert [p.id for p in c.pets(limit=2)] == ["a", "b", "c"]
        assert asked == [{"limit": "2"}, {"limit": "2", "cursor": "c2"}]
        assert [w.url for w in c.webhooks()] == ["https://example.com/hook"]


def test_a_download_that_fails_verification_is_not_written(
    live: Live, tmp_path: Path, trained_without_events: Trained
) -> None:
    """A file changed between service and disk (a tampering proxy) is refused, and nothing is saved."""

    class Tamper(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = super().handle_request(request)
            if request.url.path.endswith("/content"):
                data = bytearray(response.read())
                data[len(data) // 2] ^= 0xFF
                return httpx.Response(200, headers=response.headers, content=bytes(data))
            return response

    t = trained_without_events
    with Client(live.url, token=t.token) as c:
        assert c.download(t.render.id, tmp_path / "ok.png").manifest_state == "Trusted"
    with Client(live.url, token=t.token, transport=Tamper()) as c, pytest.raises(PetportraitError) as refused:
        c.download(t.render.id, tmp_path / "rex.png")
    assert refused.value.code.startswith("provenance_")
    assert not (tmp_path / "rex.png").exists()
