"""An ASGI middleware that gives each request an id, logs one access line and counts answers by route.

The id is the caller's `X-Request-ID` when it is a plain token, else a new one; it is answered in
`X-Request-ID`, set for every log line written while the request is answered, and kept by any job the
request queues (`telemetry.job_origin`), so the job's log lines carry it too. The access line names the
route template (`/api/v1/pets/{pet_id}/photos`), never the path's values or the query string.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from petportrait.lifecycle.metrics import observe_request
from petportrait.telemetry import REQUEST_ID, REQUEST_ID_HEADER, request_id_from

log = logging.getLogger("petportrait.access")
UNMATCHED = "(unmatched)"


def route_of(scope: Scope) -> str:
    """The template of the route that answered, or a fixed word (a typed path can hold anything).

    An included router's route knows its path without the prefix it was included under: the prefix is
    the part of the requested path before the part that the route's pattern matches.
    """
    raw = scope.get("path", "")
    route = scope.get("route")
    path, pattern = getattr(route, "path", None), getattr(route, "path_regex", None)
    if isinstance(path, str) and pattern is not None:
        cut = 0
        while cut != -1:
            if pattern.match(raw[cut:]):
                return raw[:cut] + path
            cut = raw.find("/", cut + 1)
        return path
    return "/static" if raw.startswith("/static/") else UNMATCHED


class RequestContext:
    """Request id in, request id out, one access line and one count per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope.get("headers", []) if k == REQUEST_ID_HEADER.encode()), None)
        request_id = request_id_from(header.decode("latin-1") if header else None)
        token = REQUEST_ID.set(request_id)
        status = {"code": 500}
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = route_of(scope)
            method = scope.get("method", "")
            observe_request(method=method, route=route, status=status["code"], seconds=seconds)
            log.info(
                "%s %s %s %.1f ms",
                method,
                route,
                status["code"],
                seconds * 1000,
                extra={
                    "method": method,
                    "route": route,
                    "status": status["code"],
                    "duration_ms": round(seconds * 1000, 1),
                },
            )
            REQUEST_ID.reset(token)
