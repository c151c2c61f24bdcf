"""Fixtures of the lifecycle tests."""

from __future__ import annotations

from datetime import datetime

import pytest

from petportrait.clock import Clock


@pytest.fixture
def now(frozen_clock: Clock) -> datetime:
    """The frozen clock's time, at a whole second."""
    return frozen_clock.freeze(frozen_clock.now().replace(microsecond=0))
