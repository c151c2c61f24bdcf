"""The service's clock: every policy decision reads time from here, so tests can control it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class Clock:
    """Wall-clock UTC time, which a test may freeze or move forward."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frozen: datetime | None = None

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        with self._lock:
            frozen = self._frozen
        return frozen if frozen is not None else datetime.now(UTC)

    def is_frozen(self) -> bool:
        """Whether a test froze the clock (then every reading, the database's included, is the frozen one)."""
        with self._lock:
            return self._frozen is not None

    def freeze(self, at: datetime | None = None) -> datetime:
        """Stop the clock at `at` (default: now) and return it."""
        value = (at or datetime.now(UTC)).astimezone(UTC)
        with self._lock:
            self._frozen = value
        return value

    def advance(self, delta: timedelta) -> datetime:
        """Move a frozen clock forward by `delta` and return the new time."""
        with self._lock:
            if self._frozen is None:
                raise RuntimeError("freeze the clock before advancing it")
            self._frozen = self._frozen + delta
            return self._frozen

    def unfreeze(self) -> None:
        """Return to wall-clock time."""
        with self._lock:
            self._frozen = None


clock = Clock()


def utcnow() -> datetime:
    """The current time from the service clock."""
    return clock.now()
