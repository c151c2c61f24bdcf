"""`Idempotency-Key` on every creating POST of the API, as a pure ASGI middleware.

It applies to any POST under /api/v1 that carries the header, so a creating endpoint added later is
covered without a line of its own. The request body is read first (spooled to disk past 1 MiB) and
fingerprinted with the method, path and query; a multipart body's boundary is normalised, so a client
that rebuilds the same upload with a new boundary still sends "the same request". The rules live in
`petportrait.idempotency`; this module only translates HTTP.

What is stored and replayed: JSON 2xx answers and the JSON 4xx answers that a retry would get again (400,
404, 410, 413, 415, 422...). Answers a retry may change (401, 403, 408, 409, 429, 5xx), answers that are not
JSON (an export's ZIP, an image: asking again makes a fresh one) and answers over 1 MiB give the key back
instead. An answer marked `Cache-Control: no-store` (it shows a secret once) is kept without its body.
Routes that carry credentials (sign-up, sign-in, passwords) are passed through: no row, no fingerprint.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import tempfile
from typing import IO, Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from petportrait import idempotency
from petportrait.accounts import service as accounts_service
from petportrait.errors import ProblemError

log = logging.getLogger(__name__)

HEADER = b"idempotency-key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_STORED_BYTES = 1024 * 1024
SPOOL_BYTES = 1024 * 1024
CHUNK = 64 * 1024
NOT_STORED = frozenset({401, 403, 408, 409, 423, 425, 429})
REPLAYED_HEADERS = frozenset(
    {"content-type", "location", "link", "content-disposition", "cache-control", "etag", "last-modified"}
)
_KEY = re.compile(r"^[\x21-\x7e][\x20-\x7e]*$")
_KEPT_MEDIA = ("application/json", "application/problem+json")
_BOUNDARY_MARK = b"\x00boundary\x00"
SESSION_COOKIE = "pp_session"


def _problem_message(problem: ProblemError, path: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = json.dumps(problem.to_problem(instance=path)).encode()
    headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in problem.headers.items()]
    return problem.status, headers, body


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _cookie(scope: Scope, name: str) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    for part in raw.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value or None
    return None


def _boundary(content_type: str) -> bytes | None:
    media, _, params = content_type.partition(";")
    if media.strip().lower() != "multipart/form-data":
        return None
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary" and value:
            return value.strip('"').encode("latin-1")
    return None


def fingerprint(
    spool: IO[bytes], *, key: bytes, method: str, path: str, query: str, content_type: str
) -> str:
    """HMAC-SHA256 under `key` of the request: method, path, query, media type and body (multipart boundary
    normalised). Keyed, so a stored fingerprint cannot be checked against guessed bodies."""
    digest = hmac.new(key, digestmod=hashlib.sha256)
    boundary = _boundary(content_type)
    media = content_type.partition(";")[0].strip().lower() if boundary else content_type.strip().lower()
    digest.update(f"{method}\n{path}\n{query}\n{media}\n".encode())
    spool.seek(0)
    keep = len(boundary) - 1 if boundary else 0
    carry = b""
    while chunk := spool.read(CHUNK):
        data = carry + chunk
        if boundary:
            data = data.replace(boundary, _BOUNDARY_MARK)
        if keep and len(data) > keep:
            digest.update(data[:-keep])
            carry = data[-keep:]
        elif keep:
            carry = data
        else:
            digest.update(data)
    digest.update(carry)
    spool.seek(0)
    return digest.hexdigest()


class Idempotency:
    """Answer a repeated `Idempotency-Key` POST from the first answer; refuse a reused or busy key."""

    def __init__(self, app: ASGIApp, *, prefix: str = "/api/v1") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not str(scope["path"]).startswith(self.prefix)
        ):
            await self.app(scope, receive, send)
            return
        key = _header(scope, HEADER)
        path = str(scope["path"])
        if key is None or idempotency.CREDENTIAL_PATHS.match(path):
            await self.app(scope, receive, send)
            return
        if len(key) > idempotency.MAX_KEY_LENGTH or not _KEY.match(key):
            await self._send_problem(
                send,
                ProblemError(
                    f"The Idempotency-Key must be 1 to {idempotency.MAX_KEY_LENGTH} printable ASCII "
                    "characters (a UUID is a good choice).",
                    code="invalid_idempotency_key",
                    status=400,
                    title="Invalid Idempotency-Key",
                ),
                path,
            )
            return
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            disconnected = await self._read_body(receive, spool)
            if disconnected:
                return
            await self._handle(scope, receive, send, key=key, path=path, spool=spool)

    async def _read_body(self, receive: Receive, spool: IO[bytes]) -> bool:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return True
            spool.write(message.get("body", b""))
            if not message.get("more_body", False):
                return False

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, *, key: str, path: str, spool: IO[bytes]
    ) -> None:
        services = scope["app"].state.services
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        content_type = _header(scope, b"content-type") or ""
        print_ = await run_in_threadpool(
            fingerprint,
            spool,
            key=services.settings.derived_key("idempotency-fingerprint"),
            method=scope["method"],
            path=path,
            query=query,
            content_type=content_type,
        )
        credentials = self._credentials(scope)
        owner_id: str | None = None
        if credentials is not None:
            owner_id = await run_in_threadpool(self._owner_of, services, credentials)
            if owner_id is None:  # wrong or expired credentials: the endpoint answers 401, nothing to keep
                await self.app(scope, self._replaying(spool, receive), send)
                return
        outcome = await run_in_threadpool(
            self._claim,
            services,
            scope=idempotency.scope_for(owner_id, print_),
            key=key,
            fingerprint=print_,
            method=str(scope["method"]),
            path=path,
            owner_id=owner_id,
        )
        if isinstance(outcome, idempotency.Reused):
            await self._send_problem(
                send,
                ProblemError(
                    "This Idempotency-Key was already used for a different request "
                    f"({outcome.method} {outcome.path} with another body); use a new key for a new request.",
                    code="idempotency_key_reused",
                    status=422,
                    title="Idempotency-Key reused",
                ),
                path,
            )
            return
        if isinstance(outcome, idempotency.InFlight):
            await self._send_problem(
                send,
                ProblemError(
                    "A request with this Idempotency-Key is still being answered; retry shortly.",
                    code="idempotency_key_in_flight",
                    status=409,
                    title="Idempotency-Key in flight",
                    headers={"Retry-After": str(outcome.retry_after_seconds)},
                ),
                path,
            )
            return
        if isinstance(outcome, idempotency.NotKept):
            location = dict(outcome.headers).get("location")
            await self._send_problem(
                send,
                ProblemError(
                    "The first request with this Idempotency-Key succeeded"
                    + (f" (it made {location})" if location else "")
                    + ", but its answer showed a secret once and is not kept; nothing was made again.",
                    code="idempotency_answer_not_kept",
                    status=410,
                    title="First answer not kept",
                    headers={"Location": location} if location else {},
                ),
                path,
            )
            return
        if isinstance(outcome, idempotency.Replay):
            headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in outcome.headers]
            headers += [
                (b"content-length", str(len(outcome.body)).encode()),
                (REPLAYED_HEADER.lower().encode(), b"true"),
            ]
            await send({"type": "http.response.start", "status": outcome.status, "headers": headers})
            await send({"type": "http.response.body", "body": outcome.body})
            return
        await self._run_claimed(
            scope, receive, send, spool=spool, services=services, record_id=outcome.record_id
        )

    async def _run_claimed(
        self, scope: Scope, receive: Receive, send: Send, *, spool: IO[bytes], services: Any, record_id: str
    ) -> None:
        status = 0
        headers: list[tuple[str, str]] = []
        body = bytearray()
        storable = True
        secret = False
        stored = False

        async def capture(message: Message) -> None:
            nonlocal status, headers, storable, secret, stored
            if message["type"] == "http.response.start":
                status = int(message["status"])
                every = [
                    (bytes(k).decode("latin-1").lower(), bytes(v).decode("latin-1"))
                    for k, v in message.get("headers", [])
                ]
                headers = [(k, v) for k, v in every if k in REPLAYED_HEADERS]
                media = dict(every).get("content-type", "").partition(";")[0].strip().lower()
                secret = "no-store" in dict(every).get("cache-control", "").lower()
                storable = (
                    (200 <= status < 300 or 400 <= status < 500)
                    and status not in NOT_STORED
                    and media in _KEPT_MEDIA
                )
            elif message["type"] == "http.response.body" and storable:
                if not secret:
                    body.extend(message.get("body", b""))
                if len(body) > MAX_STORED_BYTES:
                    storable = False
                    body.clear()
                elif not message.get("more_body", False):
                    # Stored before the last byte leaves: a client that retries on receiving it is replayed.
                    await run_in_threadpool(
                        self._complete,
                        services,
                        record_id=record_id,
                        status=status,
                        headers=headers,
                        body=None if secret else bytes(body),
                    )
                    stored = True
            await send(message)

        renewing = asyncio.create_task(self._keep_claimed(services, record_id=record_id))
        try:
            await self.app(scope, self._replaying(spool, receive), capture)
        finally:
            renewing.cancel()
            if not stored:
                await run_in_threadpool(self._release, services, record_id=record_id)

    async def _keep_claimed(self, services: Any, *, record_id: str) -> None:
        """Renew the claim's lease while the request runs: if this process dies, the key is free within
        `idempotency.IN_FLIGHT_TIMEOUT` and a retry runs it again instead of waiting minutes."""
        while True:
            await asyncio.sleep(idempotency.RENEW_EVERY.total_seconds())
            try:
                await run_in_threadpool(self._renew, services, record_id=record_id)
            except Exception as exc:  # the database is away: the next renewal tries again
                log.warning("could not renew the claim of an idempotency key: %s", type(exc).__name__)

    @staticmethod
    def _replaying(spool: IO[bytes], receive: Receive) -> Receive:
        spool.seek(0)
        done = False

        async def replay() -> Message:
            nonlocal done
            if done:
                return await receive()  # after the body: the client's disconnect, when it comes
            chunk = spool.read(CHUNK)
            rest = spool.read(1)
            if rest:
                spool.seek(-1, 1)
            else:
                done = True
            return {"type": "http.request", "body": chunk, "more_body": not done}

        return replay

    @staticmethod
    def _credentials(scope: Scope) -> str | None:
        authorization = _header(scope, b"authorization")
        if authorization is not None:
            scheme, _, value = authorization.partition(" ")
            return value.strip() if scheme.lower() == "bearer" and value.strip() else ""
        return _cookie(scope, SESSION_COOKIE)

    @staticmethod
    def _owner_of(services: Any, secret: str) -> str | None:
        if not secret:
            return None
        with services.session_factory() as session:
            resolved = accounts_service.resolve_token(session, secret=secret)
            session.commit()
            return resolved[0].id if resolved is not None else None

    @staticmethod
    def _claim(services: Any, **kwargs: Any) -> idempotency.Outcome:
        with services.session_factory() as session:
            return idempotency.claim(session, **kwargs)

    @staticmethod
    def _complete(services: Any, **kwargs: Any) -> None:
        with services.session_factory() as session:
            idempotency.complete(session, **kwargs)

    @staticmethod
    def _renew(services: Any, **kwargs: Any) -> None:
        with services.session_factory() as session:
            idempotency.renew(session, **kwargs)

    @staticmethod
    def _release(services: Any, **kwargs: Any) -> None:
        with services.session_factory() as session:
            idempotency.release(session, **kwargs)

    async def _send_problem(self, send: Send, problem: ProblemError, path: str) -> None:
        status, headers, body = _problem_message(problem, path)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
