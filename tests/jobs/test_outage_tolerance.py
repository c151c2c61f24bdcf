"""Heartbeats tolerate a database outage (issue 26): a worker that cannot write its heartbeat keeps its job,
says so once, and writes again when the database is back; the reaper does not count an outage that hid
every heartbeat as the worker's death."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from petportrait.clock import Clock
from petportrait.jobs import service as jobs_service
from petportrait.jobs.models import Job, JobState
from petportrait.jobs.runner import Beat, Heartbeat
from petportrait.services import build_consumer
from petportrait.web.app import Services, build_services
from tests.conftest import make_settings
from tests.jobs.test_job_states import _job
from tests.outages.proxy import TcpProxy

STALE = 2.0


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[Services, TcpProxy]]:
    url = make_settings(tmp_path).database_url
    if not url.startswith("postgresql"):
        pytest.skip("a database outage needs PostgreSQL behind a proxy")
    proxy, proxied_url = TcpProxy.in_front_of(url)
    queue = {"heartbeat_seconds": 0.3, "stale_after_seconds": STALE}
    settings = make_settings(tmp_path, database={"url": proxied_url}, queue=queue)
    services = build_services(settings, migrate=True)
    yield services, proxy
    proxy.close()
    services.engine.dispose()


def test_an_outage_longer_than_the_stale_period_resets_no_running_job(
    proxied: tuple[Services, TcpProxy], caplog: pytest.LogCaptureFixture
) -> None:
    services, proxy = proxied
    caplog.set_level(logging.WARNING)
    job_id = _job(services)
    with services.session_factory() as session:
        job = jobs_service.claim(session, job_id=job_id, worker_id="busy-worker")
        assert job is not None
    reaper = build_consumer(services, worker_id="reaper")
    beat = Beat(total=10, step=1)
    stop = threading.Event()
    heartbeat = Heartbeat(
        services.session_factory, job=job, worker_id="busy-worker", interval=0.3, beat=beat,
        shutdown=stop, hand_back=stop,
    )  # fmt: skip
    with heartbeat:
        reaper.start()
        try:
            time.sleep(1.0)
            proxy.cut()
            time.sleep(2 * STALE)  # every heartbeat is hidden for twice the stale period
            proxy.restore()
            restored = time.monotonic()
            time.sleep(3 * STALE)  # the reaper runs many times after the database is back
        finally:
            reaper.stop(timeout=30)
        assert beat.stop_reason is None  # the worker kept its job
    assert reaper.database_up_since >= restored  # the reaper saw the outage and judged nothing before
    with services.session_factory() as session:
        row = session.get(Job, job_id)
        assert row is not None and row.state == JobState.RUNNING.value and row.attempt == 1
    said = [r.getMessage() for r in caplog.records if f"heartbeat of job {job_id}" in r.getMessage()]
    assert len(said) == 2 and "failed" in said[0] and "works again" in said[1], said


def test_a_worker_that_stays_away_is_still_reaped_after_the_outage(
    proxied: tuple[Services, TcpProxy],
) -> None:
    services, proxy = proxied
    job_id = _job(services)
    with services.session_factory() as session:
        assert jobs_service.claim(session, job_id=job_id, worker_id="dead-worker") is not None
    reaper = build_consumer(services, worker_id="reaper")
    reaper.start()
    try:
        proxy.cut()
        time.sleep(STALE)
        proxy.restore()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with services.session_factory() as session:
                row = session.get(Job, job_id)
                assert row is not None
                if row.attempt == 2:
                    break
            time.sleep(0.2)
    finally:
        reaper.stop(timeout=30)
    # reaped once (attempt 2); the reaper's own consumer may already have taken the re-sent job since
    assert row.attempt == 2, row.state


def test_the_reaper_judges_heartbeats_only_a_stale_period_after_the_database_came_back(
    services: Services, frozen_clock: Clock
) -> None:
    job_id = _job(services)
    with services.session_factory() as session:
        assert jobs_service.claim(session, job_id=job_id, worker_id="quiet") is not None
    stale = services.settings.queue.stale_after_seconds
    frozen_clock.advance(timedelta(seconds=stale + 1))
    consumer = build_consumer(services, worker_id="reaper")
    consumer.database_up_since = time.monotonic()  # the database just came back
    assert consumer.reap().requeued == []
    consumer.database_up_since = time.monotonic() - stale  # workers had a whole stale period
    assert consumer.reap().requeued == [job_id]
