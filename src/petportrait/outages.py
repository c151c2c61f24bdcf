"""Dependencies that come and go: which one an error says is away, and how a loop waits for it.

`unavailable(exc)` names the dependency an exception says cannot be reached (the database, the blob
storage, the queue) or that the disk is full, walking the exception's causes; the API answers those 503
(507 for a full disk) instead of 500, and loops back off instead of dying. Knowing the exception classes of
SQLAlchemy, botocore and redis by name keeps this module free of those libraries.

`Backoff` is what a loop that talks to a dependency uses: after a failure it waits with full jitter
(a random delay up to an exponentially growing cap), and it logs one line when the dependency goes away and
one when it comes back, never one per try.
"""

from __future__ import annotations

import errno
import logging
import random
import threading
import time
from enum import StrEnum


class Dependency(StrEnum):
    DATABASE = "database"
    STORAGE = "storage"
    QUEUE = "queue"
    DISK = "disk"


# (module prefix, class name) of the exceptions that mean "that dependency cannot be reached now".
_DATABASE = {
    ("sqlalchemy.exc", "OperationalError"),
    ("sqlalchemy.exc", "InterfaceError"),
    ("sqlalchemy.exc", "DisconnectionError"),
    ("sqlalchemy.exc", "TimeoutError"),  # the connection pool is exhausted waiting for a connection
    ("psycopg", "OperationalError"),
}
_STORAGE = {
    ("botocore.exceptions", "EndpointConnectionError"),
    ("botocore.exceptions", "ConnectionClosedError"),
    ("botocore.exceptions", "ConnectTimeoutError"),
    ("botocore.exceptions", "ReadTimeoutError"),
    ("botocore.exceptions", "ProxyConnectionError"),
    ("botocore.exceptions", "ResponseStreamingError"),
    ("urllib3.exceptions", "ProtocolError"),
}
_QUEUE = {
    ("redis.exceptions", "ConnectionError"),
    ("redis.exceptions", "TimeoutError"),
    ("redis.exceptions", "BusyLoadingError"),
}
_STORAGE_UNAVAILABLE_STATUS = {500, 502, 503, 504}


def _is(exc: BaseException, names: set[tuple[str, str]]) -> bool:
    for cls in type(exc).__mro__:
        module = cls.__module__
        if any(module.startswith(prefix) and cls.__name__ == name for prefix, name in names):
            return True
    return False


def _storage_server_error(exc: BaseException) -> bool:
    if not _is(exc, {("botocore.exceptions", "ClientError")}):
        return False
    response = getattr(exc, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status in _STORAGE_UNAVAILABLE_STATUS


# SQLite reports busy files and programming errors ("no such table") alike as OperationalError: only these
# messages say that the database file cannot be used now.
_SQLITE_UNAVAILABLE = ("database is locked", "unable to open database", "disk i/o error")
_SQLITE_FULL = "database or disk is full"


def _sqlite(exc: BaseException) -> Dependency | None:
    """For one of SQLite's own errors: the dependency it says is away, or None (not an outage)."""
    message = str(exc).lower()
    if _SQLITE_FULL in message:
        return Dependency.DISK
    return Dependency.DATABASE if message.startswith(_SQLITE_UNAVAILABLE) else None


def unavailable(exc: BaseException) -> Dependency | None:
    """The dependency this exception (or one of its causes) says is away; None for any other error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return Dependency.DISK
        driver_error = getattr(current, "orig", None) or current  # SQLAlchemy wraps the driver's error
        if type(driver_error).__module__ == "sqlite3":
            return _sqlite(driver_error)
        if _is(current, _DATABASE):
            return Dependency.DATABASE
        if _is(current, _STORAGE) or _storage_server_error(current):
            return Dependency.STORAGE
        if _is(current, _QUEUE):
            return Dependency.QUEUE
        current = current.__cause__ or current.__context__
    return None


class Backoff:
    """Waits between tries at something that failed, with full jitter; logs state changes only.

    Call `failed(exc)` after a failed try (it returns how long to wait) and `succeeded()` after a good one.
    The first failure after a success logs a warning naming `what` and the error (no traceback); the first
    success after failures logs that it is back and for how long it was away.
    """

    def __init__(self, what: str, *, logger: logging.Logger, base: float = 0.25, cap: float = 5.0) -> None:
        self.what, self.log, self.base, self.cap = what, logger, base, cap
        self.failures = 0
        self.down_since: float | None = None
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def failed(self, exc: BaseException) -> float:
        """Note a failed try; returns the delay before the next one."""
        with self._lock:
            self.failures += 1
            first = self.down_since is None
            if first:
                self.down_since = time.monotonic()
            failures = self.failures
        if first:
            dependency = unavailable(exc)
            self.log.warning(
                "%s failed (%s%s: %s); retrying with back-off, quietly until it works again",
                self.what,
                f"{dependency.value} unavailable, " if dependency else "",
                type(exc).__name__,
                str(exc).splitlines()[0][:200] if str(exc) else "",
            )
        return random.uniform(0, min(self.cap, self.base * 2 ** min(failures - 1, 16)))

    def succeeded(self) -> None:
        """Note a good try; logs once that it works again."""
        with self._lock:
            down_since, failures = self.down_since, self.failures
            self.down_since, self.failures = None, 0
        if down_since is not None:
            self.log.warning(
                "%s works again after %.1f s (%d failed tries)",
                self.what,
                time.monotonic() - down_since,
                failures,
            )

    def wait(self, exc: BaseException, stop: threading.Event) -> bool:
        """Note the failure and wait its delay (cut short by `stop`); True if `stop` was set."""
        return stop.wait(self.failed(exc))
