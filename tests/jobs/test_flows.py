"""Training and render flows through the API with real worker processes, on the SQLite and Redis queues."""

from __future__ import annotations

import io
import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import func, select, update

from petportrait.clock import utcnow
from petportrait.jobs.models import Lease
from petportrait.portraits.models import PetModel, Render
from tests.jobs.stack import Stack, close_stack, make_stack
from tests.jobs.test_queue_contract import REDIS_URL, redis_available

END = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="session")
def shared_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(params=["sqlite-queue", "redis-queue"], scope="module")
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, shared_models: Path
) -> Iterator[Stack]:
    url = None
    if request.param == "redis-queue":
        if not redis_available():
            pytest.fail("Redis is not running on 127.0.0.1:6379 (.ci/run starts it)")
        url = REDIS_URL
    built = make_stack(tmp_path_factory.mktemp(request.param), queue_url=url, shared_models=shared_models)
    yield built
    close_stack(built)


@pytest.fixture
def worker(stack: Stack) -> Iterator[Stack]:
    stack.start_worker()
    yield stack
    stack.stop_all()


def train(stack: Stack, headers: dict[str, str], pet_id: str) -> tuple[str, str]:
    response = stack.client.post(f"/api/v1/pets/{pet_id}/models", headers=headers)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["job"]["state"] == "queued" and body["model"]["state"] == "queued"
    return body["model"]["id"], body["job"]["id"]


def render(stack: Stack, headers: dict[str, str], model_id: str, **body: Any) -> dict[str, Any]:
    payload = {"style": "oil_painting", "count": 2, "seed": 7, "steps": 3, **body}
    response = stack.client.post(f"/api/v1/models/{model_id}/renders", json=payload, headers=headers)
    assert response.status_code == 202, response.text
    return dict(response.json())


def events(stack: Stack, headers: dict[str, str], job_id: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    with stack.client.stream("GET", f"/api/v1/jobs/{job_id}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event:
                out.append((event, json.loads(line.removeprefix("data: "))))
    return out


def test_whole_flow_upload_train_render_download(stack: Stack) -> None:
    stack.start_worker(PETPORTRAIT__ML__TRAIN_STEPS="60")  # long enough for progress between start and end
    try:
        _whole_flow(stack)
    finally:
        stack.stop_all()


def _whole_flow(stack: Stack) -> None:
    alice = stack.user("flow-alice@example.com")
    pet_id = stack.pet_with_photos(alice, "dog")
    model_id, job_id = train(stack, alice, pet_id)
    seen = events(stack, alice, job_id)
    assert seen[-1][0] == "end" and seen[-1][1]["state"] == "succeeded", stack.worker_logs()
    fractions = [data["progress"]["fraction"] for name, data in seen if name == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(0 < f < 1 for f in fractions), fractions
    model = stack.client.get(f"/api/v1/models/{model_id}", headers=alice).json()
    assert model["state"] == "ready" and model["is_preview"] is True
    from datetime import datetime

    assert datetime.fromisoformat(model["expires_at"]) - datetime.fromisoformat(
        model["trained_at"]
    ) == timedelta(days=7)

    asked = render(stack, alice, model_id, count=2)
    assert asked["retraining"] is False and len(asked["renders"]) == 2
    end = stack.wait_end(alice, asked["job"]["id"])
    assert end["state"] == "succeeded", end
    for item in asked["renders"]:
        got = stack.client.get(f"/api/v1/renders/{item['id']}", headers=alice).json()
        assert got["state"] == "ready" and got["is_preview"] is True
        assert datetime.fromisoformat(got["expires_at"]) - datetime.fromisoformat(
            got["rendered_at"]
        ) == timedelta(days=30)
        assert got["params"]["preview"] is True and got["params"]["seed"] == got["seed"]
        content = stack.client.get(f"/api/v1/renders/{item['id']}/content", headers=alice)
        assert content.status_code == 200 and content.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(content.content)) as image:
            assert image.size == (64, 64)
    listed = stack.client.get("/api/v1/renders", params={"pet_id": pet_id}, headers=alice).json()["items"]
    assert {r["id"] for r in listed} == {r["id"] for r in asked["renders"]}
    # training and rendering wrote nothing to the worker's disk (photos, crops, LoRA: all in memory)
    assert not (stack.data_dir / "scratch").exists()


def test_a_job_of_one_person_is_invisible_to_another(worker: Stack) -> None:
    stack = worker
    owner = stack.user("owner-jobs@example.com")
    other = stack.user("other-jobs@example.com")
    pet_id = stack.pet_with_photos(owner, "cat")
    model_id, job_id = train(stack, owner, pet_id)
    for method, path in [
        ("GET", f"/api/v1/jobs/{job_id}"),
        ("GET", f"/api/v1/jobs/{job_id}/events"),
        ("POST", f"/api/v1/jobs/{job_id}/cancel"),
        ("GET", f"/api/v1/models/{model_id}"),
        ("DELETE", f"/api/v1/models/{model_id}"),
        ("POST", f"/api/v1/pets/{pet_id}/models"),
    ]:
        response = stack.client.request(method, path, headers=other)
        assert response.status_code == 404, (method, path, response.text)
    response = stack.client.post(
        f"/api/v1/models/{model_id}/renders", json={"style": "oil_painting"}, headers=other
    )
    assert response.status_code == 404
    assert stack.wait_end(owner, job_id)["state"] == "succeeded"


def test_cancel_a_queued_job_and_a_running_job(stack: Stack) -> None:
    alice = stack.user("cancel@example.com")
    queued_pet = stack.pet_with_photos(alice, "dog2")
    model_id, job_id = train(stack, alice, queued_pet)  # no worker yet: it stays queued
    cancelled = stack.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=alice).json()
    assert cancelled["state"] == "cancelled"
    assert stack.client.get(f"/api/v1/models/{model_id}", headers=alice).json()["state"] == "cancelled"

    running_pet = stack.pet_with_photos(alice, "dog3")
    stack.start_worker(PETPORTRAIT__ML__TRAIN_STEPS="400")
    try:
        model_id, job_id = train(stack, alice, running_pet)
        stack.wait_job(alice, job_id, lambda j: j["state"] == "running" and j["progress"]["step"] >= 1)
        asked = time.monotonic()
        answer = stack.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=alice).json()
        assert answer["cancel_requested"] is True
        end = stack.wait_end(alice, job_id, timeout=60)
        assert end["state"] == "cancelled"
        assert time.monotonic() - asked < 30
        assert stack.client.get(f"/api/v1/models/{model_id}", headers=alice).json()["state"] == "cancelled"
        assert stack.blob_keys("models/") == [] or all(job_id not in k for k in stack.blob_keys("models/"))
        again = stack.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=alice)
        assert again.status_code == 409 and again.json()["code"] == "job_finished"
    finally:
        stack.stop_all()


def test_worker_killed_mid_training_the_job_completes_once(stack: Stack) -> None:
    alice = stack.user("kill-train@example.com")
    pet_id = stack.pet_with_photos(alice, "cat")
    first = stack.start_worker(PETPORTRAIT__ML__TRAIN_STEPS="20")
    try:
        _model_id, job_id = train(stack, alice, pet_id)
        stack.wait_job(alice, job_id, lambda j: j["state"] == "running" and j["progress"]["step"] >= 2)
        stack.kill(first)
        killed_at = time.monotonic()
        stack.start_worker(PETPORTRAIT__ML__TRAIN_STEPS="20")
        stack.wait_job(alice, job_id, lambda j: j["attempt"] == 2 and j["state"] == "running")
        recovered = time.monotonic() - killed_at
        end = stack.wait_end(alice, job_id)
        assert end["state"] == "succeeded" and end["attempt"] == 2, (end, stack.worker_logs())
        print(f"recovery after SIGKILL during training: {recovered:.1f} s")
    finally:
        stack.stop_all()
    with stack.services.session_factory() as session:
        models = list(session.scalars(select(PetModel).where(PetModel.pet_id == pet_id)))
        assert len(models) == 1 and models[0].state == "ready"
        key = models[0].storage_key
    keys = [k for k in stack.blob_keys("models/") if job_id in k]
    assert keys == [key] and "/a2/" in key


def test_worker_killed_mid_rendering_exactly_the_asked_renders_exist(stack: Stack) -> None:
    alice = stack.user("kill-render@example.com")
    pet_id = stack.pet_with_photos(alice, "dog")
    first = stack.start_worker()
    try:
        model_id, job_id = train(stack, alice, pet_id)
        assert stack.wait_end(alice, job_id)["state"] == "succeeded"
        asked = render(stack, alice, model_id, count=4, steps=12)
        render_job = asked["job"]["id"]
        stack.wait_job(alice, render_job, lambda j: j["progress"]["step"] >= 1)
        stack.kill(first)
        stack.start_worker()
        end = stack.wait_end(alice, render_job)
        assert end["state"] == "succeeded" and end["attempt"] == 2, (end, stack.worker_logs())
    finally:
        stack.stop_all()
    ids = {r["id"] for r in asked["renders"]}
    with stack.services.session_factory() as session:
        rows = list(session.scalars(select(Render).where(Render.job_id == render_job)))
        assert {r.id for r in rows} == ids and all(r.state == "ready" for r in rows)
        referenced = {r.storage_key for r in rows}
    assert set(stack.blob_keys("renders/")) >= referenced
    assert [k for k in stack.blob_keys("renders/") if render_job in k and k not in referenced] == []


def test_two_pets_interleaved_on_one_worker_each_get_their_own_lora(worker: Stack) -> None:
    stack = worker
    alice = stack.user("two-pets@example.com")
    pets = [stack.pet_with_photos(alice, "dog"), stack.pet_with_photos(alice, "cat")]
    models = []
    for pet_id in pets:
        model_id, job_id = train(stack, alice, pet_id)
        assert stack.wait_end(alice, job_id)["state"] == "succeeded"
        models.append(model_id)
    jobs = []
    for _round in range(2):
        for model_id in models:
            asked = render(stack, alice, model_id, count=1, seed=11, steps=2)
            jobs.append((model_id, asked["job"]["id"], asked["renders"][0]["id"]))
    with stack.services.session_factory() as session:
        hashes = {m: session.get(PetModel, m).sha256 for m in models}  # type: ignore[union-attr]
    assert len(set(hashes.values())) == 2
    for model_id, job_id, render_id in jobs:
        assert stack.wait_end(alice, job_id)["state"] == "succeeded"
        params = stack.client.get(f"/api/v1/renders/{render_id}", headers=alice).json()["params"]
        assert params["lora_sha256"] == hashes[model_id]


def test_render_of_an_expired_model_retrains_it_first(worker: Stack) -> None:
    stack = worker
    alice = stack.user("expired-model@example.com")
    pet_id = stack.pet_with_photos(alice, "dog2")
    model_id, job_id = train(stack, alice, pet_id)
    assert stack.wait_end(alice, job_id)["state"] == "succeeded"
    with stack.services.session_factory() as session:
        session.execute(update(PetModel).where(PetModel.id == model_id).values(expires_at=utcnow()))
        session.commit()
    gone = stack.client.get(f"/api/v1/models/{model_id}", headers=alice)
    assert gone.status_code == 410 and gone.json()["code"] == "model_expired"
    asked = render(stack, alice, model_id, count=1)
    assert asked["retraining"] is True and asked["model_id"] != model_id
    assert "trained again" in asked["notice"]
    assert asked["training_job"] is not None and asked["job"]["waits_for"] == asked["training_job"]["id"]
    end = stack.wait_end(alice, asked["job"]["id"])
    assert end["state"] == "succeeded", (end, stack.worker_logs())
    new_model = stack.client.get(f"/api/v1/models/{asked['model_id']}", headers=alice).json()
    assert new_model["retrained_from"] == model_id and new_model["state"] == "ready"


def test_render_of_an_expired_model_without_photos_is_a_clear_error(stack: Stack) -> None:
    alice = stack.user("expired-all@example.com")
    pet_id = stack.pet_with_photos(alice, "cat", count=2)
    now = utcnow()
    with stack.services.session_factory() as session:
        model = PetModel(
            pet_id=pet_id,
            owner_id=session.scalar(select(func.min(PetModel.owner_id))) or "",
            state="ready",
            base_model="petportrait-preview",
            is_preview=True,
            token="sks",
            species="cat",
            photo_ids=[],
            created_at=now - timedelta(days=8),
            trained_at=now - timedelta(days=8),
            expires_at=now - timedelta(days=1),
        )
        from petportrait.pets.models import Pet, Photo

        pet = session.get(Pet, pet_id)
        assert pet is not None
        model.owner_id = pet.owner_id
        session.add(model)
        session.execute(update(Photo).where(Photo.pet_id == pet_id).values(expires_at=now))
        session.commit()
        model_id = model.id
    response = stack.client.post(
        f"/api/v1/models/{model_id}/renders", json={"style": "oil_painting"}, headers=alice
    )
    assert response.status_code == 410
    assert response.json()["code"] == "model_and_photos_expired"
    assert "Upload" in response.json()["detail"]


def test_training_needs_two_photos_and_render_needs_a_known_style(stack: Stack) -> None:
    alice = stack.user("bad-requests@example.com")
    pet_id = stack.pet_with_photos(alice, "dog3", count=1)
    response = stack.client.post(f"/api/v1/pets/{pet_id}/models", headers=alice)
    assert response.status_code == 422 and response.json()["code"] == "not_enough_photos"
    styles = stack.client.get("/api/v1/styles").json()
    assert len(styles) >= 16 and all("{subject}" in s["prompt"] for s in styles)


# Why the consumer loop is ours and not huey's (jobs/worker.py): huey's consumer stops at once on SIGTERM,
# and its task locks have no expiry, so a killed holder would keep the periodic tasks forever.


def test_sigterm_lets_the_running_job_finish_then_the_worker_exits(stack: Stack) -> None:
    alice = stack.user("sigterm@example.com")
    pet_id = stack.pet_with_photos(alice, "dog")
    proc = stack.start_worker(PETPORTRAIT__ML__TRAIN_STEPS="12")
    try:
        _model_id, job_id = train(stack, alice, pet_id)
        stack.wait_job(alice, job_id, lambda j: j["state"] == "running" and j["progress"]["step"] >= 1)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=240) == 0, stack.worker_logs()
        job = stack.client.get(f"/api/v1/jobs/{job_id}", headers=alice).json()
        assert job["state"] == "succeeded" and job["attempt"] == 1, (job, stack.worker_logs())
    finally:
        stack.stop_all()


def _periodic_holder(stack: Stack) -> str | None:
    with stack.services.session_factory() as session:
        lease = session.get(Lease, "periodic")
        return lease.holder if lease is not None and lease.expires_at > utcnow() else None


def test_periodic_tasks_move_to_another_worker_when_their_holder_is_killed(stack: Stack) -> None:
    first = stack.start_worker()
    try:
        deadline = time.monotonic() + 60
        while (holder := _periodic_holder(stack)) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert holder is not None, stack.worker_logs()
        stack.kill(first)
        stack.start_worker()
        deadline = time.monotonic() + 60
        while _periodic_holder(stack) in (None, holder) and time.monotonic() < deadline:
            time.sleep(0.2)
        taken = _periodic_holder(stack)
        assert taken is not None and taken != holder, stack.worker_logs()
    finally:
        stack.stop_all()
