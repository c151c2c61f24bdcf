"""An ASGI middleware that refuses request bodies over a size limit, declared or streamed.

Two limits: a small one for bodies that are parsed whole in memory (JSON, URL-encoded forms, and a body
without a content type, which FastAPI reads as JSON), and a large one for uploads (multipart, raw files),
which are streamed to their checks. Both are counted while the body streams, before anything parses it."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    pass


def _problem(limit: int) -> bytes:
    return json.dumps(
        {
            "type": "/problems/request_too_large",
            "title": "Request too large",
            "status": 413,
            "detail": f"The request body is larger than the limit of {limit} bytes.",
            "code": "request_too_large",
        }
    ).encode()


class BodySizeLimit:
    """Refuse with 413 problem+json any body over `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_parsed_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_parsed_bytes = min(max_bytes, max_parsed_bytes or max_bytes)

    def limit_for(self, scope: Scope) -> int:
        """The small limit for a body parsed whole (JSON, a form, no content type), else the large one."""
        media = b""
        for name, value in scope.get("headers", []):
            if name == b"content-type":
                media = value.split(b";")[0].strip().lower()
        parsed = (
            not media
            or media == b"application/json"
            or media.endswith(b"+json")
            or media == b"application/x-www-form-urlencoded"
        )
        return self.max_parsed_bytes if parsed else self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    await self._refuse(send, limit)
                    return
        if limit < self.max_bytes:  # a small body parsed whole: read it here (to the limit), then replay it
            body = bytearray()
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    break
                body += message.get("body", b"")
                if len(body) > limit:
                    await self._refuse(send, limit)
                    return
                if not message.get("more_body", False):
                    break
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": bytes(body), "more_body": False}
                return await receive()

            await self.app(scope, replay, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send, limit)

    async def _refuse(self, send: Send, limit: int) -> None:
        body = _problem(limit)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
