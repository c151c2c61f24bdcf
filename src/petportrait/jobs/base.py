"""The job queue protocol: what a queue backend must do for petportrait.

The database row of a job is the source of truth (state, attempt, worker, heartbeat, progress). The queue
only carries a job's id, sent after the transaction that created the job commits. A message may be
delivered more than once (the reaper re-sends lost ones): running a job claims its row atomically, so a
duplicate message is a no-op.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sqlalchemy.orm import Session

from petportrait.storage.base import BlobStore

if TYPE_CHECKING:
    from petportrait.jobs.models import Job
    from petportrait.jobs.runner import Beat, WorkerContext


@runtime_checkable
class JobQueue(Protocol):
    """A FIFO of job ids shared by every process of one deployment.

    - enqueue(job_id): send a job id; call only after the job's row is committed.
    - dequeue(timeout): the next job id, or None if none arrived within `timeout` seconds.
    - size(): how many ids are waiting.
    - flush(): drop every waiting id (tests and admin only).
    - check(): raise if the backend cannot be reached.
    """

    name: str

    def enqueue(self, job_id: str) -> None: ...

    def dequeue(self, timeout: float = 1.0) -> str | None: ...

    def size(self) -> int: ...

    def flush(self) -> None: ...

    def check(self) -> None: ...


class JobHandler(Protocol):
    """What runs the jobs of one kind; a domain registers one per kind (`Registry.add_job_handler`).

    - run(ctx, session, job, beat, scratch): do the work; raise `JobFailed` to fail with a reason shown to
      the person, `JobStopped` when `beat` says stop. Claims, heartbeats and ends are the job system's.
    - remove_outputs(session, blobs=, job=, attempt=): delete what that attempt wrote that no committed row
      refers to (a dead or failed attempt leaves nothing behind).
    - on_end(session, job=): reflect a job's end in the domain's rows (e.g. a failed training's model).
    """

    def run(self, ctx: WorkerContext, session: Session, job: Job, beat: Beat, scratch: Path) -> None: ...

    def remove_outputs(self, session: Session, *, blobs: BlobStore, job: Job, attempt: int) -> list[str]: ...

    def on_end(self, session: Session, *, job: Job) -> None: ...


Periodic = tuple[str, float, Any]
"""(name, interval in seconds, a function of no arguments) run by the periodic lease holder."""
