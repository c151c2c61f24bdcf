"""Jobs: create, claim, heartbeat, progress, finish, cancel, and reap jobs whose worker died.

Every write a worker makes is fenced by (job id, attempt, worker id, state running): a worker that lost
its job to the reaper can no longer change it. A job whose cancel flag is set (by its owner, or by the
erasure of its owner's account, in the erasure's transaction) is never claimed or requeued again, and the
fence of an output write (`assert_may_write`) refuses it: it writes nothing more.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from petportrait.clock import utcnow
from petportrait.errors import Conflict, NotFound
from petportrait.jobs.base import JobQueue
from petportrait.jobs.dbclock import coordination_now
from petportrait.jobs.models import FINAL_STATES, Job, JobState
from petportrait.telemetry import job_origin

log = logging.getLogger(__name__)


class LostJob(RuntimeError):
    """The worker no longer owns this attempt of the job (reaped, cancelled or finished elsewhere)."""


class CancelRequested(LostJob):
    """The job's cancel flag is set (its owner cancelled it or was erased): it must write nothing more."""


def create_job(
    session: Session,
    *,
    kind: str,
    owner_id: str,
    target_id: str,
    max_attempts: int,
    payload: dict[str, Any] | None = None,
    waits_for: str | None = None,
) -> Job:
    """Add a queued job; the caller commits, then enqueues its id (unless it waits for another job)."""
    job = Job(
        kind=kind,
        owner_id=owner_id,
        target_id=target_id,
        state=JobState.QUEUED.value,
        attempt=1,
        max_attempts=max_attempts,
        payload=payload or {},
        waits_for=waits_for,
        origin=job_origin(),
        created_at=coordination_now(session),
    )
    session.add(job)
    session.flush()
    return job


def mark_enqueued(session: Session, *, job_ids: list[str]) -> None:
    """Record when the ids were sent to the queue (the reaper re-sends ids that were lost)."""
    if job_ids:
        now = coordination_now(session)
        session.execute(update(Job).where(Job.id.in_(job_ids)).values(enqueued_at=now))


def send(session_factory: sessionmaker[Session], queue: JobQueue, job_ids: list[str]) -> list[str]:
    """Send the ids of committed jobs to the queue and mark them enqueued; returns the ids sent.

    Call it after the transaction that created (or requeued) the jobs has committed. An id that cannot be
    sent is logged and left unmarked: the reaper sends it again.
    """
    sent: list[str] = []
    for job_id in job_ids:
        try:
            queue.enqueue(job_id)
        except Exception:
            log.exception(
                "could not send job %s to the queue %s; the reaper will send it again", job_id, queue.name
            )
            continue
        sent.append(job_id)
    if sent:
        with session_factory() as session:
            mark_enqueued(session, job_ids=sent)
            session.commit()
    return sent


def get_job_for_owner(session: Session, *, owner_id: str, job_id: str) -> Job:
    """The owner's job; another person's job is not found."""
    job = session.get(Job, job_id)
    if job is None or job.owner_id != owner_id:
        raise NotFound("No such job.", code="job_not_found")
    return job


def claim(session: Session, *, job_id: str, worker_id: str) -> Job | None:
    """Atomically move a queued job to running for this worker; None if it is not claimable.

    A queued job whose cancel flag is set is never claimed: it is ended cancelled here instead.
    """
    now = coordination_now(session)
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.state == JobState.QUEUED.value,
            Job.waits_for.is_(None),
            Job.cancel_requested.is_not(True),
        )
        .values(
            state=JobState.RUNNING.value,
            worker_id=worker_id,
            heartbeat_at=now,
            started_at=now,
            progress_step=0,
            message=None,
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    if result.rowcount != 1:  # type: ignore[attr-defined]
        _end_cancelled_in_queue(session, job_id=job_id, now=now)
        return None
    job = session.get(Job, job_id, populate_existing=True)
    return job


def _end_cancelled_in_queue(session: Session, *, job_id: str, now: datetime) -> None:
    ended = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.QUEUED.value, Job.cancel_requested.is_(True))
        .values(state=JobState.CANCELLED.value, finished_at=now, worker_id=None, heartbeat_at=None)
        .execution_options(synchronize_session=False)
    )
    if ended.rowcount == 1:  # type: ignore[attr-defined]
        _release_waiters(session, parent_id=job_id, parent_state=JobState.CANCELLED)
    session.commit()


def cancel_requested(session: Session, *, job: Job) -> bool:
    """Whether the job's cancel flag is set (read now, not from the session's copy)."""
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job.id)))


def _fence(job: Job, worker_id: str) -> Any:
    return and_(
        Job.id == job.id,
        Job.attempt == job.attempt,
        Job.worker_id == worker_id,
        Job.state == JobState.RUNNING.value,
    )


def heartbeat(
    session: Session,
    *,
    job: Job,
    worker_id: str,
    step: int | None = None,
    total: int | None = None,
    eta_seconds: float | None = None,
    message: str | None = None,
) -> bool:
    """Refresh the heartbeat (and progress); returns whether cancellation was asked. Raises LostJob."""
    values: dict[str, Any] = {"heartbeat_at": coordination_now(session)}
    if step is not None:
        values["progress_step"] = step
    if total is not None:
        values["progress_total"] = total
    if eta_seconds is not None:
        values["eta_seconds"] = eta_seconds
    if message is not None:
        values["message"] = message
    result = session.execute(
        update(Job)
        .where(_fence(job, worker_id))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise LostJob(job.id)
    cancel = session.scalar(select(Job.cancel_requested).where(Job.id == job.id))
    return bool(cancel)


def assert_owned(session: Session, *, job: Job, worker_id: str) -> None:
    """In the caller's transaction, lock the job row; LostJob unless this attempt still owns it."""
    result = session.execute(
        update(Job)
        .where(_fence(job, worker_id))
        .values(heartbeat_at=coordination_now(session))
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise LostJob(job.id)


def assert_may_write(session: Session, *, job: Job, worker_id: str) -> None:
    """The fence of an output write, in the caller's transaction (before it adds a model or render row):
    locks the job row; CancelRequested if its cancel flag is set, LostJob unless this attempt owns it.

    The flag is part of the locking UPDATE's condition, so a cancel (or an erasure) committed before this
    point is seen, and one that comes after waits for this transaction (and then finds its rows).
    """
    result = session.execute(
        update(Job)
        .where(_fence(job, worker_id), Job.cancel_requested.is_not(True))
        .values(heartbeat_at=coordination_now(session))
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        if cancel_requested(session, job=job):
            raise CancelRequested(job.id)
        raise LostJob(job.id)


def finish(
    session: Session,
    *,
    job: Job,
    worker_id: str,
    state: JobState,
    error_code: str | None = None,
    error_message: str | None = None,
    message: str | None = None,
) -> list[str]:
    """End the job in `state` within the caller's transaction; returns ids of jobs released to the queue."""
    assert_owned(session, job=job, worker_id=worker_id)
    now = utcnow()
    values: dict[str, Any] = {
        "state": state.value,
        "finished_at": now,
        "error_code": error_code,
        "error_message": error_message,
        "eta_seconds": 0.0 if state == JobState.SUCCEEDED else None,
    }
    if message is not None:
        values["message"] = message
    if state == JobState.SUCCEEDED:
        values["progress_step"] = Job.progress_total
    session.execute(
        update(Job).where(Job.id == job.id).values(**values).execution_options(synchronize_session=False)
    )
    return _release_waiters(session, parent_id=job.id, parent_state=state)


def _release_waiters(session: Session, *, parent_id: str, parent_state: JobState) -> list[str]:
    """Jobs waiting for the parent: released when it succeeded, failed with it otherwise."""
    waiters = list(
        session.scalars(select(Job).where(Job.waits_for == parent_id, Job.state == JobState.QUEUED.value))
    )
    released: list[str] = []
    now = utcnow()
    for waiter in waiters:
        if parent_state == JobState.SUCCEEDED:
            waiter.waits_for = None
            released.append(waiter.id)
        else:
            waiter.state = (
                JobState.CANCELLED.value if parent_state == JobState.CANCELLED else JobState.FAILED.value
            )
            waiter.error_code = (
                "retraining_failed" if parent_state != JobState.CANCELLED else "retraining_cancelled"
            )
            waiter.error_message = (
                "The model had to be retrained first, and the retraining did not finish; "
                "nothing was rendered."
            )
            waiter.finished_at = now
            released.extend(
                _release_waiters(session, parent_id=waiter.id, parent_state=JobState(waiter.state))
            )
    return released


def request_cancel(session: Session, *, job: Job) -> str:
    """Cancel a queued job at once, or ask a running one to stop; returns the resulting state."""
    if job.state in FINAL_STATES:
        raise Conflict(f"The job has already ended ({job.state}).", code="job_finished")
    if job.state == JobState.QUEUED.value:
        result = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.state == JobState.QUEUED.value)
            .values(state=JobState.CANCELLED.value, cancel_requested=True, finished_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            _release_waiters(session, parent_id=job.id, parent_state=JobState.CANCELLED)
            session.refresh(job)
            return JobState.CANCELLED.value
        session.refresh(job)
    session.execute(
        update(Job)
        .where(Job.id == job.id)
        .values(cancel_requested=True)
        .execution_options(synchronize_session=False)
    )
    session.refresh(job)
    return job.state


@dataclass
class ReapReport:
    """What one reaper pass did."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)


def find_stale(session: Session, *, now: datetime, stale_after: timedelta) -> list[Job]:
    """Running jobs whose heartbeat is older than the threshold."""
    return list(
        session.scalars(
            select(Job).where(Job.state == JobState.RUNNING.value, Job.heartbeat_at < now - stale_after)
        )
    )


def find_lost_messages(session: Session, *, now: datetime, resend_after: timedelta) -> list[str]:
    """Queued jobs sent long ago that nobody claimed (their message was lost): to be sent again."""
    return list(
        session.scalars(
            select(Job.id).where(
                Job.state == JobState.QUEUED.value,
                Job.waits_for.is_(None),
                (Job.enqueued_at.is_(None)) | (Job.enqueued_at < now - resend_after),
                Job.created_at < now - resend_after,
            )
        )
    )


def requeue_stale(session: Session, *, job: Job, now: datetime) -> bool:
    """Requeue a dead attempt's job (attempt + 1), or fail it past the limit; True if requeued.

    A job whose cancel flag is set is never requeued: it ends cancelled.
    """
    if cancel_requested(session, job=job):
        result = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.attempt == job.attempt, Job.state == JobState.RUNNING.value)
            .values(
                state=JobState.CANCELLED.value,
                finished_at=now,
                message="Cancelled; its worker had stopped answering.",
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            _release_waiters(session, parent_id=job.id, parent_state=JobState.CANCELLED)
        return False
    if job.attempt >= job.max_attempts:
        result = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.attempt == job.attempt, Job.state == JobState.RUNNING.value)
            .values(
                state=JobState.FAILED.value,
                finished_at=now,
                error_code="worker_lost",
                error_message=(
                    f"The worker running this job stopped answering {job.attempt} times; "
                    "the job was given up. Start it again, or contact support if it keeps happening."
                ),
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            _release_waiters(session, parent_id=job.id, parent_state=JobState.FAILED)
        return False
    result = session.execute(
        update(Job)
        .where(
            Job.id == job.id,
            Job.attempt == job.attempt,
            Job.state == JobState.RUNNING.value,
            Job.cancel_requested.is_not(True),
        )
        .values(
            state=JobState.QUEUED.value,
            attempt=job.attempt + 1,
            worker_id=None,
            heartbeat_at=None,
            enqueued_at=now,
            message=f"Restarting after a worker stopped (attempt {job.attempt + 1} of {job.max_attempts}).",
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def oldest_queued_seconds(session: Session, *, now: datetime) -> dict[str, float]:
    """Per kind with queued jobs: seconds the oldest claimable queued job has waited since it was sent."""
    waited = func.min(func.coalesce(Job.enqueued_at, Job.created_at))
    rows = session.execute(
        select(Job.kind, waited)
        .where(Job.state == JobState.QUEUED.value, Job.waits_for.is_(None))
        .group_by(Job.kind)
    ).all()
    return {kind: max(0.0, (now - since).total_seconds()) for kind, since in rows if since is not None}
