"""One clock for coordination: heartbeats, claims, leases and the reaper read the database's clock, so a
process whose own clock is 5 minutes fast or slow neither resets healthy workers' jobs nor loses its own;
the skew is measured and said loudly (issue 26)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from petportrait.clock import clock
from petportrait.jobs import leases
from petportrait.jobs import service as jobs_service
from petportrait.jobs.dbclock import ClockSkew, coordination_now
from petportrait.jobs.models import Job, JobState
from petportrait.web.app import Services
from tests.jobs.test_job_states import _job, reap

FIVE_MINUTES = timedelta(minutes=5)


@pytest.fixture
def postgres(services: Services) -> Services:
    if services.engine.dialect.name != "postgresql":
        pytest.skip("on SQLite every process shares the host's clock; the skew needs PostgreSQL")
    return services


@contextmanager
def process_clock(offset: timedelta, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's wall clock, `offset` off the true time (as on a host whose NTP is broken)."""
    with monkeypatch.context() as patch:
        patch.setattr(clock, "now", lambda: datetime.now(UTC) + offset)
        yield


def database_now(services: Services) -> datetime:
    with services.session_factory() as session:
        value = session.scalar(select(func.clock_timestamp()))
        assert isinstance(value, datetime)
        return value


def close_to(value: datetime | None, reference: datetime, within: float = 5.0) -> bool:
    return value is not None and abs((value - reference).total_seconds()) <= within


def test_fast_and_slow_workers_write_heartbeats_in_the_database_clock_and_the_reaper_spares_them(
    postgres: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = postgres
    fast_job, slow_job = _job(services), _job(services)
    for job_id, offset in ((fast_job, FIVE_MINUTES), (slow_job, -FIVE_MINUTES)):
        with process_clock(offset, monkeypatch), services.session_factory() as session:
            job = jobs_service.claim(session, job_id=job_id, worker_id=f"worker{offset}")
            assert job is not None
            jobs_service.heartbeat(session, job=job, worker_id=f"worker{offset}", step=1, total=2)
            session.commit()
    now = database_now(services)
    with services.session_factory() as session:
        for job_id in (fast_job, slow_job):
            row = session.get(Job, job_id)
            assert row is not None
            assert close_to(row.heartbeat_at, now) and close_to(row.started_at, now)
    # a reaper on a fast clock (it would see every heartbeat 5 minutes old) and one on a slow clock
    for offset in (FIVE_MINUTES, -FIVE_MINUTES):
        with process_clock(offset, monkeypatch):
            report = reap(services, stale_after=timedelta(seconds=60))
        assert report.requeued == [] and report.failed == []  # type: ignore[attr-defined]
    with services.session_factory() as session:
        states = session.scalars(select(Job.state).where(Job.id.in_([fast_job, slow_job]))).all()
    assert states == [JobState.RUNNING.value, JobState.RUNNING.value]


def test_a_fast_process_does_not_take_a_lease_early(
    postgres: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory = postgres.session_factory
    ttl = timedelta(seconds=30)
    with process_clock(-FIVE_MINUTES, monkeypatch):
        assert leases.take(factory, name="skew-test", holder="slow", ttl=ttl)
    with process_clock(FIVE_MINUTES, monkeypatch):
        assert not leases.take(factory, name="skew-test", holder="fast", ttl=ttl)
    with process_clock(-FIVE_MINUTES, monkeypatch):
        assert leases.take(factory, name="skew-test", holder="slow", ttl=ttl)  # renewing still works
        leases.release(factory, name="skew-test", holder="slow")
    with process_clock(FIVE_MINUTES, monkeypatch):
        assert leases.take(factory, name="skew-test", holder="fast", ttl=ttl)


@pytest.mark.parametrize("offset", [FIVE_MINUTES, -FIVE_MINUTES], ids=["fast", "slow"])
def test_a_skewed_clock_is_measured_and_said_once(
    postgres: Services, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, offset: timedelta
) -> None:
    skew = ClockSkew(who="worker w1")
    caplog.set_level(logging.WARNING, logger="petportrait.jobs.dbclock")
    with process_clock(offset, monkeypatch):
        first = skew.check(postgres.session_factory)
        skew.check(postgres.session_factory)
    assert first is not None and not first.ok
    assert abs(first.skew_seconds - offset.total_seconds()) < 5
    warnings = [r.getMessage() for r in caplog.records if "CLOCK SKEW" in r.getMessage()]
    assert len(warnings) == 1 and "worker w1" in warnings[0]
    assert skew.status()["ok"] is False
    back = skew.check(postgres.session_factory)  # the host's time was fixed
    assert back is not None and back.ok and skew.status()["ok"] is True
    assert any("back within" in r.getMessage() for r in caplog.records)


def test_coordination_time_is_the_frozen_clock_in_tests_and_the_host_clock_on_sqlite(
    services: Services, frozen_clock: Callable[[], object]
) -> None:
    with services.session_factory() as session:
        assert coordination_now(session) == clock.now()
