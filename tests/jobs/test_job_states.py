"""The job row is the source of truth: claims are exclusive, writes are fenced, the reaper recovers."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import update

from petportrait.accounts import service as accounts_service
from petportrait.clock import Clock
from petportrait.db import new_id
from petportrait.jobs import leases
from petportrait.jobs import service as jobs_service
from petportrait.jobs.models import Job, JobState
from petportrait.jobs.worker import reap as reap_jobs
from petportrait.portraits.models import JobKind
from petportrait.web.app import Services


def _job(services: Services, *, max_attempts: int = 3) -> str:
    with services.session_factory() as session:
        user = accounts_service.create_user(session, email=f"u{new_id()}@example.com", password="x" * 12)
        job = jobs_service.create_job(
            session, kind=JobKind.TRAIN, owner_id=user.id, target_id="nothing", max_attempts=max_attempts
        )
        session.commit()
        return job.id


def test_only_one_of_many_concurrent_claims_wins(services: Services) -> None:
    job_id = _job(services)
    winners: list[str] = []
    barrier = threading.Barrier(4)

    def claim(worker: str) -> None:
        barrier.wait()
        with services.session_factory() as session:
            if jobs_service.claim(session, job_id=job_id, worker_id=worker) is not None:
                winners.append(worker)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1


def test_reaper_requeues_a_stale_job_and_fences_out_the_old_worker(
    services: Services, frozen_clock: Clock
) -> None:
    job_id = _job(services)
    with services.session_factory() as session:
        job = jobs_service.claim(session, job_id=job_id, worker_id="old")
        assert job is not None
    frozen_clock.advance(timedelta(seconds=services.settings.queue.stale_after_seconds + 1))
    report = reap(services, stale_after=timedelta(seconds=services.settings.queue.stale_after_seconds))
    assert report.requeued == [job_id]
    assert services.queue.dequeue(timeout=1) == job_id
    with services.session_factory() as session:
        row = session.get(Job, job_id)
        assert row is not None and row.state == JobState.QUEUED.value and row.attempt == 2
        with pytest.raises(jobs_service.LostJob):
            jobs_service.heartbeat(session, job=job, worker_id="old")
        again = jobs_service.claim(session, job_id=job_id, worker_id="new")
        assert again is not None and again.attempt == 2


def test_reaper_gives_up_after_the_last_attempt_with_a_clear_message(
    services: Services, frozen_clock: Clock
) -> None:
    job_id = _job(services, max_attempts=2)
    stale = timedelta(seconds=services.settings.queue.stale_after_seconds + 1)
    for attempt in (1, 2):
        with services.session_factory() as session:
            assert jobs_service.claim(session, job_id=job_id, worker_id=f"w{attempt}") is not None
        frozen_clock.advance(stale)
        reap(services, stale_after=stale - timedelta(seconds=1))
    with services.session_factory() as session:
        row = session.get(Job, job_id)
        assert row is not None
        assert row.state == JobState.FAILED.value
        assert row.error_code == "worker_lost"
        assert "stopped answering 2 times" in (row.error_message or "")


def test_a_live_heartbeat_keeps_the_reaper_away(services: Services, frozen_clock: Clock) -> None:
    job_id = _job(services)
    with services.session_factory() as session:
        job = jobs_service.claim(session, job_id=job_id, worker_id="w")
        assert job is not None
        frozen_clock.advance(timedelta(seconds=services.settings.queue.stale_after_seconds - 1))
        jobs_service.heartbeat(session, job=job, worker_id="w", step=3, total=10)
    frozen_clock.advance(timedelta(seconds=2))
    report = reap(services, stale_after=timedelta(seconds=services.settings.queue.stale_after_seconds))
    assert report.requeued == [] and report.failed == []


def test_a_lost_queue_message_is_sent_again(services: Services, frozen_clock: Clock) -> None:
    job_id = _job(services)  # committed but never enqueued, as if the process died right after commit
    frozen_clock.advance(timedelta(seconds=services.settings.queue.stale_after_seconds + 1))
    report = reap(services, stale_after=timedelta(seconds=services.settings.queue.stale_after_seconds))
    assert report.resent == [job_id]
    assert services.queue.dequeue(timeout=1) == job_id


def test_cancelling_a_queued_job_is_immediate_and_a_claim_then_fails(services: Services) -> None:
    job_id = _job(services)
    with services.session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert jobs_service.request_cancel(session, job=job) == JobState.CANCELLED.value
        session.commit()
        assert jobs_service.claim(session, job_id=job_id, worker_id="w") is None


def test_only_one_process_holds_the_periodic_lease(services: Services, frozen_clock: Clock) -> None:
    ttl = timedelta(seconds=10)
    factory = services.session_factory
    assert leases.take(factory, name="periodic", holder="a", ttl=ttl)
    assert not leases.take(factory, name="periodic", holder="b", ttl=ttl)
    assert leases.take(factory, name="periodic", holder="a", ttl=ttl)
    frozen_clock.advance(timedelta(seconds=9))
    assert not leases.take(factory, name="periodic", holder="b", ttl=ttl)
    frozen_clock.advance(timedelta(seconds=1))  # expired at exactly now >= expires_at
    assert leases.take(factory, name="periodic", holder="b", ttl=ttl)
    assert not leases.take(factory, name="periodic", holder="a", ttl=ttl)
    leases.release(factory, name="periodic", holder="b")
    assert leases.take(factory, name="periodic", holder="a", ttl=ttl)


def reap(services: Services, *, stale_after: timedelta) -> object:
    """One reaper pass with the handlers the domains registered."""
    return reap_jobs(
        services.session_factory,
        blobs=services.blobs,
        queue=services.queue,
        handlers=services.registry.job_handlers,
        stale_after=stale_after,
    )


def _cancel(services: Services, job_id: str) -> None:
    with services.session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        jobs_service.request_cancel(session, job=job)
        session.commit()


def test_a_running_job_cancelled_whose_worker_died_is_ended_not_requeued_and_never_claimed(
    services: Services, frozen_clock: Clock
) -> None:
    job_id = _job(services)
    with services.session_factory() as session:
        assert jobs_service.claim(session, job_id=job_id, worker_id="dead") is not None
    _cancel(services, job_id)  # as an erasure does: the flag is set, the worker never reads it (it died)
    frozen_clock.advance(timedelta(seconds=services.settings.queue.stale_after_seconds + 1))
    report = reap(services, stale_after=timedelta(seconds=services.settings.queue.stale_after_seconds))
    assert report.requeued == [] and report.cancelled == [job_id]
    assert services.queue.dequeue(timeout=0.2) is None
    with services.session_factory() as session:
        row = session.get(Job, job_id)
        assert row is not None and row.state == JobState.CANCELLED.value
        assert jobs_service.claim(session, job_id=job_id, worker_id="new") is None
    # even a queued row with the flag (written by an older version, or by hand) is never claimed
    with services.session_factory() as session:
        session.execute(
            update(Job).where(Job.id == job_id).values(state=JobState.QUEUED.value, finished_at=None)
        )
        session.commit()
        assert jobs_service.claim(session, job_id=job_id, worker_id="new") is None
        row = session.get(Job, job_id, populate_existing=True)
        assert row is not None and row.state == JobState.CANCELLED.value and row.worker_id is None


def test_the_write_fence_refuses_a_cancelled_job_and_a_lost_one(services: Services) -> None:
    job_id = _job(services)
    with services.session_factory() as session:
        job = jobs_service.claim(session, job_id=job_id, worker_id="w")
        assert job is not None
        jobs_service.assert_may_write(session, job=job, worker_id="w")
        session.commit()
        with pytest.raises(jobs_service.LostJob) as lost:
            jobs_service.assert_may_write(session, job=job, worker_id="someone-else")
        assert not isinstance(lost.value, jobs_service.CancelRequested)
        session.rollback()
    _cancel(services, job_id)
    with services.session_factory() as session:
        again = session.get(Job, job_id)
        assert again is not None
        with pytest.raises(jobs_service.CancelRequested):
            jobs_service.assert_may_write(session, job=again, worker_id="w")
