"""The coordination clock: the database's time, for every comparison between processes.

Heartbeats, claims, leases and the reaper compare timestamps written by different machines. Each machine's
own clock may be off by minutes (a worker 5 minutes fast would take the periodic lease early and reset
healthy workers' jobs; one 5 minutes slow would have its own jobs reset at once), so these timestamps are
read from the one clock every process shares: PostgreSQL's `clock_timestamp()`. On SQLite every process
runs on the same host and shares its clock, which is the service clock. A test that froze the service
clock (`petportrait.clock.clock.freeze`) gets the frozen time here too, so the reaper's tests keep
controlling time.

`ClockSkew` measures how far this process's clock is from the database's and says so loudly (once, when
it crosses `SKEW_WARN_SECONDS`, and once when it comes back); `/healthz` shows the last measurement.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from petportrait.clock import clock, utcnow

log = logging.getLogger(__name__)

SKEW_WARN_SECONDS = 5.0
SKEW_CHECK_SECONDS = 60.0  # how often a long-running process measures again


def _database_clock(session: Session) -> datetime | None:
    """The database's own current time, or None where the database shares this host's clock (SQLite)."""
    bind = session.get_bind()
    if bind.dialect.name != "postgresql":
        return None
    value = session.scalar(select(func.clock_timestamp()))
    assert isinstance(value, datetime)
    return value.astimezone(UTC)


def coordination_now(session: Session) -> datetime:
    """The time every process agrees on: the database's clock (the frozen clock in tests)."""
    if clock.is_frozen():
        return utcnow()
    return _database_clock(session) or utcnow()


@dataclass(frozen=True)
class SkewReading:
    """How far this process's clock is ahead of the database's (negative: behind), when it was measured."""

    skew_seconds: float
    measured_at: float

    @property
    def ok(self) -> bool:
        return abs(self.skew_seconds) <= SKEW_WARN_SECONDS


def measure_skew(session: Session) -> float:
    """Seconds this process's clock is ahead of the database's (0.0 where they share a clock, or frozen)."""
    if clock.is_frozen():
        return 0.0
    before = utcnow()
    database = _database_clock(session)
    after = utcnow()
    if database is None:
        return 0.0
    local = before + (after - before) / 2
    return (local - database) / timedelta(seconds=1)


class ClockSkew:
    """The last skew measured by this process, logged once per change between within and beyond bounds."""

    def __init__(self, *, who: str) -> None:
        self.who = who
        self.last: SkewReading | None = None
        self._lock = threading.Lock()

    def check(self, session_factory: sessionmaker[Session]) -> SkewReading | None:
        """Measure now; None (and nothing logged) when the database cannot be reached."""
        try:
            with session_factory() as session:
                skew = measure_skew(session)
        except Exception:
            return None
        reading = SkewReading(skew_seconds=round(skew, 3), measured_at=time.monotonic())
        with self._lock:
            previous, self.last = self.last, reading
        if not reading.ok and (previous is None or previous.ok):
            log.warning(
                "CLOCK SKEW: the clock of %s is %+.1f s off the database's (more than %.0f s); heartbeats, "
                "leases and the reaper use the database's clock, but fix this host's time (NTP)",
                self.who,
                reading.skew_seconds,
                SKEW_WARN_SECONDS,
            )
        elif reading.ok and previous is not None and not previous.ok:
            log.warning("clock of %s is back within %.0f s of the database's", self.who, SKEW_WARN_SECONDS)
        return reading

    def status(self) -> dict[str, object]:
        """For /healthz: the last reading (ok, skew_seconds), or that none was made yet."""
        with self._lock:
            reading = self.last
        if reading is None:
            return {"ok": True, "skew_seconds": None, "warn_beyond_seconds": SKEW_WARN_SECONDS}
        return {
            "ok": reading.ok,
            "skew_seconds": reading.skew_seconds,
            "warn_beyond_seconds": SKEW_WARN_SECONDS,
        }
