"""Fixtures of the lifecycle tests."""

from __future__ import annotations

from datetime import datetime

import pytest

from petportrait.clock import Clock
from tests.storage.conftest import (  # noqa: F401 - the S3 fixtures, shared with the storage tests
    _no_ambient_aws,
    moto_endpoint,
    new_s3_store,
    s3_client,
)


@pytest.fixture
def now(frozen_clock: Clock) -> datetime:
    """The frozen clock's time, at a whole second."""
    return frozen_clock.freeze(frozen_clock.now().replace(microsecond=0))
