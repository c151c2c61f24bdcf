"""Fencing and worker disks with real worker processes: an erasure stops a running render's writes, a
worker killed mid-training then an erasure leave nothing of the account on disk (issue 12)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from petportrait.accounts.models import User
from petportrait.clock import utcnow
from petportrait.lifecycle import service as lifecycle_service
from petportrait.portraits.models import PetModel, Render
from petportrait.retention.models import SweepRun
from petportrait.rights.models import Generation
from tests.conftest import pet_photos
from tests.jobs.stack import Stack, close_stack, make_stack
from tests.jobs.test_flows import render, train

PROMPT = "wearing a zqxjv-unique-hat beside a lighthouse"


@pytest.fixture
def stack(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    built = make_stack(tmp_path / "stack", queue_url=None, shared_models=tmp_path_factory.mktemp("models"))
    yield built
    close_stack(built)


def erase(stack: Stack, owner_id: str) -> None:
    with stack.services.session_factory() as session:
        lifecycle_service.erase_account(session, user_id=owner_id, actor_id=owner_id)
        session.commit()


def owner_of(stack: Stack, model_id: str) -> str:
    with stack.services.session_factory() as session:
        model = session.get(PetModel, model_id)
        assert model is not None
        return model.owner_id


def _wait_for_sweeps(stack: Stack, *, after: datetime, count: int, timeout: float) -> None:
    """Until `count` sweeps started after `after` have been recorded: the first has then also finished its
    WAL checkpoint (a run is recorded, then checkpoints), which is what the disk scan needs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with stack.services.session_factory() as session:
            runs = session.scalar(
                select(func.count()).select_from(SweepRun).where(SweepRun.started_at >= after)
            )
        if (runs or 0) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} sweeps ran after {after}\n{stack.worker_logs()}")


def test_a_render_running_during_erasure_writes_nothing_after_it(stack: Stack) -> None:
    """The job's end is read from its row. The worker runs no periodic tasks: the sweeper clears an erased
    account's ended jobs and renders, and under load its run (every 60 s) could land between the job's end and
    the next look at it (the cause of this test's flakiness: `None == 'cancelled'`, the row was gone)."""
    alice = stack.user("fence-render@example.com")
    pet_id = stack.pet_with_photos(alice, "dog")
    stack.start_worker(periodic=False)
    try:
        model_id, job_id = train(stack, alice, pet_id)
        assert stack.wait_end(alice, job_id)["state"] == "succeeded"
        owner_id = owner_of(stack, model_id)
        asked = render(stack, alice, model_id, count=8, steps=40, prompt=PROMPT, style=None)
        job = stack.wait_job(alice, asked["job"]["id"], lambda j: (j["progress"]["step"] or 0) >= 1)
        erase(stack, owner_id)
        with stack.services.session_factory() as session:
            erased_at = session.scalar(select(User.deleted_at).where(User.id == owner_id))
        assert erased_at is not None
        deadline = time.monotonic() + 300  # one image past the fence may take minutes on a busy machine
        with stack.services.session_factory() as session:
            while time.monotonic() < deadline:
                state = session.scalar(
                    select(Render.state).where(Render.job_id == job["id"], Render.state == "rendering")
                )
                from petportrait.jobs.models import Job

                ended = session.scalar(select(Job.state).where(Job.id == job["id"]))
                assert ended is not None, "the job row is gone: something swept it before it was read"
                if ended in ("succeeded", "failed", "cancelled") and state is None:
                    break
                time.sleep(0.2)
                session.expire_all()
            assert ended == "cancelled", stack.worker_logs()
            late_renders = session.scalars(
                select(Render).where(Render.owner_id == owner_id, Render.rendered_at >= erased_at)
            ).all()
            late_generations = session.scalars(
                select(Generation).where(Generation.owner_id == owner_id, Generation.created_at >= erased_at)
            ).all()
            ready = session.scalars(
                select(Render).where(Render.job_id == job["id"], Render.state == "ready")
            ).all()
        assert late_renders == [] and late_generations == []
        assert 1 <= len(ready) < 8
        render_blobs = [k for k in stack.blob_keys("renders/") if job["id"] in k]
        assert len(render_blobs) == len(ready)  # no blob of a render refused at the fence is left
    finally:
        stack.stop_all()


def test_a_worker_killed_mid_training_then_erasure_leaves_nothing_on_disk(stack: Stack) -> None:
    alice = stack.user("killed-erased@example.com")
    pet_id = stack.pet_with_photos(alice, "cat")
    names = [p.name.encode() for p in pet_photos("cat")[:3]]
    hashes: list[bytes] = []  # the photos' sha256 (hex and raw): no fingerprint outlives the photos either
    first = stack.start_worker(PETPORTRAIT__ML__TRAIN_STEPS="400", PETPORTRAIT__QUEUE__WORKER_NAME="host-a")
    try:
        model_id, job_id = train(stack, alice, pet_id)
        stack.wait_job(alice, job_id, lambda j: j["state"] == "running" and (j["progress"]["step"] or 0) >= 2)
        owner_id = owner_of(stack, model_id)
        with stack.services.session_factory() as session:
            from petportrait.pets.models import Photo as PhotoRow

            for sha, source in session.execute(
                select(PhotoRow.sha256, PhotoRow.source_sha256).where(PhotoRow.owner_id == owner_id)
            ):
                hashes += [h.encode() for h in (sha, source) if h]
                hashes += [bytes.fromhex(h) for h in (sha, source) if h]
        assert hashes
        waiting = render(stack, alice, model_id, prompt=PROMPT, style=None)  # waits for the training
        assert waiting["job"]["state"] == "queued"
        stack.kill(first)
        assert not (stack.data_dir / "scratch").exists()  # the killed worker wrote nothing there
        erase(stack, owner_id)
        interval = 1.0
        stack.start_worker(
            PETPORTRAIT__QUEUE__WORKER_NAME="host-b",
            PETPORTRAIT__RETENTION__SWEEP_INTERVAL_SECONDS=str(interval),
        )
        stale = float(stack.env["PETPORTRAIT__QUEUE__STALE_AFTER_SECONDS"])
        deadline = time.monotonic() + stale + 2 * interval + 30
        from petportrait.jobs.models import Job
        from petportrait.pets.models import Photo

        states: list[tuple[str, int, str | None] | None] = []
        while time.monotonic() < deadline:
            with stack.services.session_factory() as session:
                left = session.scalar(select(Photo.id).where(Photo.owner_id == owner_id))
                row = session.execute(
                    select(Job.state, Job.attempt, Job.worker_id).where(Job.id == job_id)
                ).first()
                states.append(None if row is None else (row[0], row[1], row[2]))
            if left is None and (states[-1] is None or states[-1][0] == "cancelled"):  # (then cleared)
                break
            time.sleep(0.2)
        assert left is None, stack.worker_logs()
        # the reaper of the new host ended it cancelled; nobody claimed it again
        seen = [state for state in states if state is not None]
        assert all(attempt == 1 and not (worker or "").startswith("host-b") for _, attempt, worker in seen)
        assert all(state != "queued" for state, _, _ in seen), states
        assert f"cancelled ['{job_id}']" in stack.logs[1].read_text(), stack.worker_logs()
        _wait_for_sweeps(stack, after=utcnow(), count=2, timeout=4 * interval + 30)
    finally:
        stack.stop_all()
    stack.services.engine.dispose()
    found = []
    for path in stack.data_dir.rglob("*"):
        if not path.is_file() or (path.name.startswith("worker-") and path.suffix == ".log"):
            continue
        data = path.read_bytes()
        found += [(str(path), n) for n in [*names, *hashes, PROMPT.encode()] if n in data]
    assert found == []
    assert stack.blob_keys(f"photos/{owner_id}") == [] and stack.blob_keys(f"models/{owner_id}") == []
    assert not (stack.data_dir / "scratch").exists()
