"""huey-backed job queue: SQLite storage in the data folder by default, Redis for a fleet."""

from __future__ import annotations

import time
from pathlib import Path

from huey import Huey, RedisHuey, SqliteHuey
from redis import ConnectionPool

from petportrait.files import private_sqlite_file
from petportrait.settings import Settings


def _run_job_placeholder(job_id: str) -> str:
    """The huey task whose messages carry job ids; petportrait's consumer executes the job itself."""
    return job_id


class HueyJobQueue:
    """A JobQueue over a huey instance; messages are `run_job(job_id)` tasks."""

    def __init__(self, huey: Huey, *, name: str) -> None:
        self.huey = huey
        self.name = name
        self._task = huey.task(name="run_job")(_run_job_placeholder)

    def enqueue(self, job_id: str) -> None:
        self.huey.enqueue(self._task.s(job_id))

    def dequeue(self, timeout: float = 1.0) -> str | None:
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            task = self.huey.dequeue()
            if task is not None:
                return str(task.args[0])
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.25)

    def size(self) -> int:
        return int(self.huey.pending_count())

    def waiting(self) -> set[str]:
        return {str(task.args[0]) for task in self.huey.pending() if task.args}

    def flush(self) -> None:
        self.huey.flush()

    def check(self) -> None:
        self.huey.pending_count()


def create_queue(settings: Settings) -> HueyJobQueue:
    """The queue the settings name: Redis for redis:// URLs, else SQLite in the data folder."""
    url = settings.queue.url
    name = settings.queue.name
    if url and url.startswith(("redis://", "rediss://", "unix://")):
        # Socket timeouts: a Redis that hangs (not refused) is an error within seconds, not a stuck worker.
        pool = ConnectionPool.from_url(
            url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=10
        )
        huey: Huey = RedisHuey(name=name, connection_pool=pool, results=False, blocking=True, read_timeout=1)
        return HueyJobQueue(huey, name=f"redis:{name}")
    if url and not url.startswith("sqlite:"):
        raise ValueError(f"queue.url must be redis://... or sqlite:///path, got {url!r}")
    path = Path(url.removeprefix("sqlite:///")) if url else settings.queue_path
    private_sqlite_file(path)
    huey = SqliteHuey(name=name, filename=str(path), results=False, fsync=False, timeout=30)
    return HueyJobQueue(huey, name=f"sqlite:{path}")
