"""The job queue protocol: what a queue backend must do for petportrait.

The database row of a job is the source of truth (state, attempt, worker, heartbeat, progress). The queue
only carries a job's id, sent after the transaction that created the job commits. A message may be
delivered more than once (the reaper re-sends lost ones): running a job claims its row atomically, so a
duplicate message is a no-op.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class JobQueue(Protocol):
    """A FIFO of job ids shared by every process of one deployment.

    - enqueue(job_id): send a job id; call only after the job's row is committed.
    - dequeue(timeout): the next job id, or None if none arrived within `timeout` seconds.
    - size(): how many ids are waiting.
    - waiting(): the ids waiting (read, not taken): the reaper re-sends only ids the queue lost.
    - flush(): drop every waiting id (tests and admin only).
    - check(): raise if the backend cannot be reached.
    """

    name: str

    def enqueue(self, job_id: str) -> None: ...

    def dequeue(self, timeout: float = 1.0) -> str | None: ...

    def size(self) -> int: ...

    def waiting(self) -> set[str]: ...

    def flush(self) -> None: ...

    def check(self) -> None: ...


Periodic = tuple[str, float, Any]
"""(name, interval in seconds, a function of no arguments) run by the periodic lease holder."""
