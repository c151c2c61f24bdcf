"""How `petportrait serve` runs the app under uvicorn so that slow clients cannot hold it: a connection
limit, a short keep-alive, a cap on a request's head, and a deadline for a request's headers.

uvicorn times out idle keep-alive connections but not a client that drips its headers a byte at a time;
`HeaderDeadline` closes a connection whose request head is not complete within server.header_timeout_seconds
of its first byte (or of the connection, when nothing comes). In production a reverse proxy in front should
add the same and more (see the README): TLS, request-rate and per-client connection limits, body timeouts.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from petportrait.settings import Settings


class HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol, with a deadline for each request's head."""

    header_timeout: float = 10.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:  # the head of a request is arriving: its deadline runs
            self._arm()
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the head is complete
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of `uvicorn.run` that bound what clients can hold."""
    cfg = settings.server
    protocol = type("ServeProtocol", (HeaderDeadline,), {"header_timeout": cfg.header_timeout_seconds})
    return {
        "http": protocol,
        "limit_concurrency": cfg.max_connections,
        "timeout_keep_alive": cfg.keep_alive_seconds,
        "h11_max_incomplete_event_size": cfg.max_head_bytes,
        "backlog": cfg.backlog,
    }
