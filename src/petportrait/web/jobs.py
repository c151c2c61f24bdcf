"""Jobs API: state, live progress as server-sent events, cancellation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session
from starlette.types import Receive, Scope, Send

from petportrait.accounts import service as accounts_service
from petportrait.accounts.deps import CurrentUser, Principal, PrincipalDep
from petportrait.errors import TooManyRequests
from petportrait.http import ServicesDep, SessionDep
from petportrait.jobs import service
from petportrait.jobs.events import JobEventHub, StreamLimitReached, Subscription
from petportrait.jobs.models import FINAL_STATES, Job
from petportrait.jobs.schemas import JobOut, job_out

router = APIRouter(tags=["jobs"])
KEEPALIVE_SECONDS = 15.0
RECONNECT_MS = 2000


@router.get("/jobs/{job_id}", response_model=JobOut)
def get_job(job_id: str, user: CurrentUser, session: SessionDep) -> JobOut:
    """A job's state and progress."""
    return job_out(service.get_job_for_owner(session, owner_id=user.id, job_id=job_id))


@router.post("/jobs/{job_id}/cancel", response_model=JobOut)
def cancel_job(job_id: str, user: CurrentUser, session: SessionDep, services: ServicesDep) -> JobOut:
    """Cancel a queued job at once, or ask a running one to stop within a step."""
    job = service.get_job_for_owner(session, owner_id=user.id, job_id=job_id)
    service.request_cancel(session, job=job)
    handler = services.registry.job_handlers.get(job.kind)
    if handler is not None:
        handler.on_end(session, job=job)
    session.commit()
    return job_out(job)


def _sse(event: str, data: dict[str, object]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()


def _read_job(session: Session, job_id: str) -> dict[str, Any] | None:
    job = session.get(Job, job_id)
    return None if job is None else job_out(job).model_dump(mode="json")


def _live_tokens(session: Session, token_ids: set[str]) -> set[str]:
    return accounts_service.live_token_ids(session, token_ids=token_ids)


async def event_hub(request: Request, services: ServicesDep) -> JobEventHub:
    """The app's shared job pollers (made on first use, on the event loop: async, so never in a thread)."""
    hub: JobEventHub | None = getattr(request.app.state, "job_event_hub", None)
    if hub is None:
        quotas = services.settings.quotas
        hub = JobEventHub(
            services.session_factory,
            read_job=_read_job,
            live_tokens=_live_tokens,
            poll_seconds=quotas.event_poll_seconds,
            max_per_account=quotas.event_streams_per_account,
        )
        request.app.state.job_event_hub = hub
    return hub


def _owned_job(job_id: str, principal: PrincipalDep, session: SessionDep) -> Principal:
    """Run in a thread: the job must be the signed-in person's (404 otherwise)."""
    service.get_job_for_owner(session, owner_id=principal.user.id, job_id=job_id)
    return principal


class _EventStream(StreamingResponse):
    """A stream that always gives its subscription back, however the connection ends."""

    def __init__(self, content: AsyncIterator[bytes], *, on_close: Callable[[], None]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


@router.get(
    "/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "`progress` events, then `end`; `reconnect` when the stream reached its maximum "
            "duration; `unauthorized` when the token was revoked meanwhile",
        },
        429: {"description": "this account already has its quota of open streams"},
    },
)
async def job_events(
    job_id: str,
    principal: Annotated[Principal, Depends(_owned_job)],
    services: ServicesDep,
    hub: Annotated[JobEventHub, Depends(event_hub)],
) -> StreamingResponse:
    """Server-sent events: `progress` (never going backwards), then `end` with the final state."""
    quotas = services.settings.quotas
    try:
        sub = hub.subscribe(job_id=job_id, account_id=principal.user.id, token_id=principal.token.id)
    except StreamLimitReached:
        raise TooManyRequests(
            f"This account already has {quotas.event_streams_per_account} event streams open; close one "
            "(or poll GET /api/v1/jobs/{id}) and try again.",
            code="too_many_streams",
            headers={"Retry-After": str(quotas.retry_after_seconds)},
        ) from None
    return _EventStream(
        _stream(sub, max_seconds=quotas.event_stream_max_seconds), on_close=lambda: hub.unsubscribe(sub)
    )


async def _stream(sub: Subscription, *, max_seconds: float) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_seconds
    last_fraction = -1.0
    last_state = ""
    last_sent = loop.time()
    yield f"retry: {RECONNECT_MS}\n\n".encode()
    while True:
        left = deadline - loop.time()
        if left <= 0:
            # The client's EventSource reconnects after `retry` and gets a fresh stream (and a fresh check).
            yield _sse("reconnect", {"id": sub.job_id, "reason": "max_duration", "retry_ms": RECONNECT_MS})
            return
        try:
            item = await asyncio.wait_for(sub.queue.get(), timeout=min(KEEPALIVE_SECONDS, left))
        except TimeoutError:
            item = None
        if loop.time() - last_sent >= KEEPALIVE_SECONDS and deadline > loop.time():
            last_sent = loop.time()  # nothing said for a while: a comment keeps proxies from closing us
            yield b": keep-alive\n\n"
        if item is None:
            continue
        if isinstance(item, BaseException):
            yield _sse("reconnect", {"id": sub.job_id, "reason": "unavailable", "retry_ms": RECONNECT_MS})
            return
        if sub.token_id not in item.live_tokens:
            yield _sse("unauthorized", {"id": sub.job_id, "code": "invalid_token"})
            return
        data = item.job
        if data is None:
            yield _sse("end", {"id": sub.job_id, "state": "deleted"})
            return
        state = str(data["state"])
        fraction = float(data["progress"]["fraction"])
        if state in FINAL_STATES:
            if state == "succeeded" and last_fraction < 1.0:
                yield _sse("progress", data)
            yield _sse("end", data)
            return
        if fraction > last_fraction or state != last_state:
            if fraction < last_fraction:  # a retry restarts its steps: never show a step back
                data = {**data, "progress": {**data["progress"], "fraction": last_fraction}}  # shared: copy
            last_fraction = max(last_fraction, fraction)
            last_state = state
            last_sent = loop.time()
            yield _sse("progress", data)
