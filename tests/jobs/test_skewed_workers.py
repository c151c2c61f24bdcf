"""Two worker processes under libfaketime, one 5 minutes fast and one 5 minutes slow, against PostgreSQL
and Redis (issue 26): a training and renders all succeed on their first attempt, no job is reset, and each
worker says loudly that its clock is off."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.jobs.stack import Stack, close_stack, make_stack
from tests.jobs.test_flows import render, train
from tests.jobs.test_queue_contract import REDIS_URL, redis_available

LIBFAKETIME = next(
    (
        path
        for path in (
            Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"),
            Path("/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"),
            Path("/usr/lib/faketime/libfaketime.so.1"),
        )
        if path.exists()
    ),
    None,
)


@pytest.fixture
def stack(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if LIBFAKETIME is None:
        pytest.fail("libfaketime is not installed (make test installs Debian's faketime)")
    if not redis_available():
        pytest.fail("Redis is not running on 127.0.0.1:6379")
    built = make_stack(
        tmp_path / "stack", queue_url=REDIS_URL, shared_models=tmp_path_factory.mktemp("models")
    )
    if built.services.engine.dialect.name != "postgresql":
        close_stack(built)
        pytest.skip("clock skew between hosts needs PostgreSQL (on SQLite every process shares one clock)")
    yield built
    close_stack(built)


def skewed(offset: str) -> dict[str, str]:
    assert LIBFAKETIME is not None
    return {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": offset}


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_workers_five_minutes_fast_and_slow_run_every_job_once(stack: Stack) -> None:
    alice = stack.user("skewed@example.com")
    pet_id = stack.pet_with_photos(alice, "dog")
    stack.start_worker(PETPORTRAIT__QUEUE__WORKER_NAME="fast", **skewed("+5m"))
    stack.start_worker(PETPORTRAIT__QUEUE__WORKER_NAME="slow", **skewed("-5m"))
    try:
        model_id, job_id = train(stack, alice, pet_id)
        trained = stack.wait_end(alice, job_id)
        renders = [render(stack, alice, model_id, seed=seed)["job"]["id"] for seed in (1, 2, 3)]
        ends = [stack.wait_end(alice, render_id) for render_id in renders]
    finally:
        stack.stop_all()
    logs = stack.worker_logs()
    for job in (trained, *ends):
        assert job["state"] == "succeeded" and job["attempt"] == 1, (job, logs)
    assert "Restarting after a worker stopped" not in logs and "requeued ['" not in logs, logs
    assert logs.count("CLOCK SKEW") == 2, logs  # each worker said it, once
