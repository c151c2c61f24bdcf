"""The reaper re-sends only job ids the queue lost (issue 26): a job waiting behind busy workers is not
sent again every stale period, and ids lost with a restarted queue are sent once."""

from __future__ import annotations

from datetime import timedelta

from petportrait.clock import Clock
from petportrait.jobs import service as jobs_service
from petportrait.web.app import Services
from tests.jobs.test_job_states import _job, reap


def test_a_waiting_job_is_not_resent_and_a_lost_one_is_resent_once(
    services: Services, frozen_clock: Clock
) -> None:
    stale = timedelta(seconds=services.settings.queue.stale_after_seconds)
    waiting, lost = _job(services), _job(services)
    assert jobs_service.send(services.session_factory, services.queue, [waiting, lost]) == [waiting, lost]
    for _ in range(3):  # every worker is busy for three stale periods: both ids stay in the queue
        frozen_clock.advance(stale + timedelta(seconds=1))
        assert reap(services, stale_after=stale).resent == []  # type: ignore[attr-defined]
    assert services.queue.size() == 2
    services.queue.flush()  # the queue restarted empty: both messages are gone
    frozen_clock.advance(stale + timedelta(seconds=1))
    assert sorted(reap(services, stale_after=stale).resent) == sorted([waiting, lost])  # type: ignore[attr-defined]
    frozen_clock.advance(stale + timedelta(seconds=1))
    assert reap(services, stale_after=stale).resent == []  # type: ignore[attr-defined]
    assert services.queue.size() == 2  # repaired once, not doubled
