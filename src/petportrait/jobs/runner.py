"""Running one job: claim it, heartbeat while its handler works, and end it (or hand it back).

A job's kind names the handler a domain registered (`Registry.add_job_handler`); this module knows no
domain. Every write a worker makes is fenced by (job id, attempt, worker id, state running), so a worker
that lost its job to the reaper can no longer change it; a write of an output row is also fenced by the
cancel flag (`jobs.service.assert_may_write`: cancelled, or its owner erased, it writes nothing more).
A job gets no scratch folder: handlers keep what they derive in memory, so a killed worker leaves no files.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from petportrait.jobs import service as jobs_service
from petportrait.jobs.models import Job, JobState
from petportrait.outages import Backoff, unavailable
from petportrait.settings import Settings
from petportrait.storage.base import BlobStore
from petportrait.telemetry import job_span

log = logging.getLogger(__name__)


class JobStopped(Exception):
    """The job must stop: cancelled by its owner, handed back at shutdown, or lost to the reaper."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JobFailed(Exception):
    """The job cannot succeed; `code` and the message are shown to the person."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Beat:
    """Shared between a running job and its heartbeat thread: latest progress and stop reasons."""

    step: int | None = None
    total: int | None = None
    eta_seconds: float | None = None
    message: str | None = None
    stop_reason: str | None = None
    changed: threading.Event = field(default_factory=threading.Event)

    def update(
        self, *, step: int, total: int, eta_seconds: float | None = None, message: str | None = None
    ) -> None:
        self.step, self.total, self.eta_seconds = step, total, eta_seconds
        if message is not None:
            self.message = message
        self.changed.set()

    def should_stop(self) -> bool:
        return self.stop_reason is not None

    def check(self) -> None:
        if self.stop_reason is not None:
            raise JobStopped(self.stop_reason)


class Heartbeat:
    """A thread that writes the job's heartbeat and progress, and notices cancellation or loss."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        job: Job,
        worker_id: str,
        interval: float,
        beat: Beat,
        shutdown: threading.Event,
        hand_back: threading.Event,
    ) -> None:
        self.factory, self.job, self.worker_id, self.interval = factory, job, worker_id, interval
        self.beat, self.shutdown, self.hand_back = beat, shutdown, hand_back
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job.id[:8]}", daemon=True)
        # A heartbeat that cannot be written (the database is away) is retried quietly: the job goes on,
        # its writes stay fenced, and the reaper does not count the outage as this worker's death.
        self._backoff = Backoff(f"heartbeat of job {job.id}", logger=log, cap=max(0.25, interval))

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self.beat.changed.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        last = 0.0
        while not self._done.is_set():
            self.beat.changed.wait(timeout=min(self.interval, 0.5))
            self.beat.changed.clear()
            if self.hand_back.is_set() and self.beat.stop_reason is None:
                self.beat.stop_reason = "hand_back"
            now = time.monotonic()
            if now - last < min(self.interval, 0.5) and not self._done.is_set():
                continue
            last = now
            try:
                with self.factory() as session:
                    cancel = jobs_service.heartbeat(
                        session,
                        job=self.job,
                        worker_id=self.worker_id,
                        step=self.beat.step,
                        total=self.beat.total,
                        eta_seconds=self.beat.eta_seconds,
                        message=self.beat.message,
                    )
                self._backoff.succeeded()
                if cancel and self.beat.stop_reason is None:
                    self.beat.stop_reason = "cancelled"
            except jobs_service.LostJob:
                self.beat.stop_reason = "lost"
                return
            except Exception as exc:
                if unavailable(exc) is None and not self._backoff.down:
                    log.exception("heartbeat of job %s failed; retrying", self.job.id)
                self._done.wait(self._backoff.failed(exc))


class JobHandler(Protocol):
    """What runs the jobs of one kind; a domain registers one per kind (`Registry.add_job_handler`).

    - run(ctx, session, job, beat): do the work, in memory (no files); raise `JobFailed` to fail with a
      reason shown to the person, `JobStopped` when `beat` says stop. Claims, heartbeats and ends are the
      job system's.
    - remove_outputs(session, blobs=, job=, attempt=): delete what that attempt wrote that no committed row
      refers to (a dead or failed attempt leaves nothing behind).
    - on_end(session, job=): reflect a job's end in the domain's rows (e.g. a failed training's model).
    """

    def run(self, ctx: WorkerContext, session: Session, job: Job, beat: Beat) -> None: ...

    def remove_outputs(self, session: Session, *, blobs: BlobStore, job: Job, attempt: int) -> list[str]: ...

    def on_end(self, session: Session, *, job: Job) -> None: ...


@dataclass
class WorkerContext:
    """What a consumer gives each job: settings, database, blobs, the job handlers and stop signals."""

    settings: Settings
    session_factory: sessionmaker[Session]
    blobs: BlobStore
    handlers: Mapping[str, JobHandler]
    worker_id: str
    shutdown: threading.Event = field(default_factory=threading.Event)
    hand_back: threading.Event = field(default_factory=threading.Event)
    released: list[str] = field(default_factory=list)


def handler_for(ctx: WorkerContext, kind: str) -> JobHandler:
    """The handler registered for jobs of `kind`."""
    try:
        return ctx.handlers[kind]
    except KeyError:
        raise JobFailed(
            "job_kind_unknown", f"No handler runs jobs of kind {kind!r} in this worker."
        ) from None


def run_job(ctx: WorkerContext, job_id: str) -> str | None:
    """Claim and run one job; returns its end state (None if not claimable). Job errors never raise."""
    with ctx.session_factory() as session:
        job = jobs_service.claim(session, job_id=job_id, worker_id=ctx.worker_id)
        if job is None:
            return None
        with job_span(job.kind, job_id=job.id, attempt=job.attempt, origin=job.origin):
            log.info("job %s (%s) attempt %s started", job.id, job.kind, job.attempt)
            state = _run_claimed(ctx, session, job)
            log.info("job %s (%s) attempt %s ended %s", job.id, job.kind, job.attempt, state or "elsewhere")
            return state


def _run_claimed(ctx: WorkerContext, session: Session, job: Job) -> str | None:
    """Run a claimed job under its heartbeat; its end state (None if it was lost)."""
    beat = Beat(total=0, step=0)
    heartbeat = Heartbeat(
        ctx.session_factory,
        job=job,
        worker_id=ctx.worker_id,
        interval=ctx.settings.queue.heartbeat_seconds,
        beat=beat,
        shutdown=ctx.shutdown,
        hand_back=ctx.hand_back,
    )
    try:
        handler = handler_for(ctx, job.kind)
        with heartbeat:
            handler.run(ctx, session, job, beat)
        return JobState.SUCCEEDED.value
    except JobStopped as stop:
        return _stopped(ctx, session, job, stop.reason)
    except JobFailed as failure:
        return _end(ctx, session, job, JobState.FAILED, failure.code, failure.message)
    except jobs_service.CancelRequested:
        return _stopped(ctx, session, job, "cancelled")
    except jobs_service.LostJob:
        return _stopped(ctx, session, job, "lost")
    except Exception as exc:
        if unavailable(exc) is not None:
            return _ride_out(ctx, session, job, exc)
        log.exception("job %s failed unexpectedly", job.id)
        return _end(
            ctx,
            session,
            job,
            JobState.FAILED,
            "job_error",
            "Something went wrong on our side while running this job; nothing was kept half-way. "
            "Try again.",
        )


def _end(
    ctx: WorkerContext, session: Session, job: Job, state: JobState, code: str | None, message: str | None
) -> str | None:
    session.rollback()
    try:
        handler = ctx.handlers.get(job.kind)
        if handler is not None:
            handler.remove_outputs(session, blobs=ctx.blobs, job=job, attempt=job.attempt)
        released = jobs_service.finish(
            session, job=job, worker_id=ctx.worker_id, state=state, error_code=code, error_message=message
        )
        if handler is not None:
            handler.on_end(session, job=job)
        session.commit()
        ctx.released.extend(released)
        return state.value
    except jobs_service.LostJob:
        session.rollback()
        return None


def _ride_out(ctx: WorkerContext, session: Session, job: Job, exc: BaseException) -> str | None:
    """A dependency went away under the job: it is not the job's fault, so it is not failed. Once the
    database answers again the attempt is handed back to the queue (same attempt, outputs removed)."""
    backoff = Backoff(
        f"handing back job {job.id} after {unavailable(exc)} became unavailable", logger=log, cap=2.0
    )
    while True:
        if ctx.hand_back.is_set() and ctx.shutdown.is_set() and backoff.failures > 30:
            return None  # stopping for good: the reaper requeues it
        try:
            state = _stopped(ctx, session, job, "outage")
        except Exception as again:
            session.rollback()
            if unavailable(again) is None:
                log.exception("job %s could not be handed back", job.id)
                return None
            time.sleep(backoff.failed(again))
            continue
        backoff.succeeded()
        return state


def _stopped(ctx: WorkerContext, session: Session, job: Job, reason: str) -> str | None:
    session.rollback()
    if reason == "cancelled" or (
        reason in ("hand_back", "outage") and jobs_service.cancel_requested(session, job=job)
    ):
        return _end(ctx, session, job, JobState.CANCELLED, None, None)
    if reason in ("hand_back", "outage"):
        handler_for(ctx, job.kind).remove_outputs(session, blobs=ctx.blobs, job=job, attempt=job.attempt)
        try:
            jobs_service.assert_owned(session, job=job, worker_id=ctx.worker_id)
            job_row = session.get(Job, job.id, populate_existing=True)
            assert job_row is not None
            job_row.state = JobState.QUEUED.value
            job_row.worker_id = None
            job_row.heartbeat_at = None
            job_row.message = (
                "Handed back by a worker that was shutting down; another worker continues."
                if reason == "hand_back"
                else "Restarting after a service it needs was briefly unavailable."
            )
            session.commit()
            ctx.released.append(job.id)
            return JobState.QUEUED.value
        except jobs_service.LostJob:
            session.rollback()
            return None
    # lost: the reaper gave this attempt's job to another; leave nothing of ours behind
    handler_for(ctx, job.kind).remove_outputs(session, blobs=ctx.blobs, job=job, attempt=job.attempt)
    session.commit()
    return None
