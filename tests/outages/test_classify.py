"""Which errors say a dependency is away (503/507) and which are bugs (500): SQLite's busy file and full
disk are outages, its "no such table" is not."""

from __future__ import annotations

import errno
import sqlite3

import psycopg
import pytest
import redis
from botocore.exceptions import EndpointConnectionError
from sqlalchemy.exc import OperationalError

from petportrait.outages import Dependency, unavailable


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (OperationalError("q", {}, sqlite3.OperationalError("database is locked")), Dependency.DATABASE),
        (OperationalError("q", {}, sqlite3.OperationalError("database or disk is full")), Dependency.DISK),
        (OperationalError("q", {}, sqlite3.OperationalError("no such table: pets")), None),
        (OperationalError("q", {}, psycopg.OperationalError("connection refused")), Dependency.DATABASE),
        (EndpointConnectionError(endpoint_url="http://s3"), Dependency.STORAGE),
        (redis.exceptions.ConnectionError("refused"), Dependency.QUEUE),
        (OSError(errno.ENOSPC, "No space left on device"), Dependency.DISK),
        (ValueError("a bug"), None),
    ],
)
def test_errors_are_told_apart(error: BaseException, expected: Dependency | None) -> None:
    assert unavailable(error) == expected
    try:
        raise RuntimeError("wrapped") from error
    except RuntimeError as wrapped:
        assert unavailable(wrapped) == expected
