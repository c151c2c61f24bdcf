"""One contract suite for every JobQueue backend: huey on SQLite and huey on the machine's Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from petportrait.jobs.base import JobQueue
from petportrait.jobs.huey_queue import create_queue
from tests.conftest import make_settings

REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_available() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except Exception:
        return False


@pytest.fixture(params=["sqlite", "redis"])
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobQueue]:
    if request.param == "redis":
        if not redis_available():
            pytest.fail("Redis is not running on 127.0.0.1:6379 (.ci/run starts it)")
        settings = make_settings(tmp_path, queue={"url": REDIS_URL, "name": f"test-{uuid.uuid4().hex}"})
    else:
        settings = make_settings(tmp_path, queue={"url": None})
    q = create_queue(settings)
    yield q
    q.flush()


def test_ids_come_out_in_order_once(queue: JobQueue) -> None:
    for i in range(5):
        queue.enqueue(f"job-{i}")
    assert queue.size() == 5
    assert [queue.dequeue(timeout=1) for _ in range(5)] == [f"job-{i}" for i in range(5)]
    assert queue.size() == 0


def test_dequeue_on_empty_queue_returns_none_after_timeout(queue: JobQueue) -> None:
    import time

    start = time.monotonic()
    assert queue.dequeue(timeout=0.3) is None
    assert time.monotonic() - start < 3


def test_flush_drops_waiting_ids(queue: JobQueue) -> None:
    queue.enqueue("a")
    queue.enqueue("b")
    queue.flush()
    assert queue.size() == 0
    assert queue.dequeue(timeout=0.1) is None


def test_check_succeeds_on_a_reachable_backend(queue: JobQueue) -> None:
    queue.check()


def test_two_queues_on_one_store_share_messages(queue: JobQueue, tmp_path: Path) -> None:
    """A second process's queue object (same settings) sees what the first sent."""
    from petportrait.jobs.huey_queue import HueyJobQueue

    assert isinstance(queue, HueyJobQueue)
    other = HueyJobQueue(queue.huey.__class__(**_huey_kwargs(queue)), name=queue.name)
    queue.enqueue("shared")
    assert other.dequeue(timeout=2) == "shared"


def _huey_kwargs(queue: object) -> dict[str, object]:
    from huey import RedisHuey

    from petportrait.jobs.huey_queue import HueyJobQueue

    assert isinstance(queue, HueyJobQueue)
    huey = queue.huey
    if isinstance(huey, RedisHuey):
        return {"name": huey.name, "url": REDIS_URL, "results": False}
    return {"name": huey.name, "filename": huey.storage.filename, "results": False}
