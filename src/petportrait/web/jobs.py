"""Jobs API: state, live progress as server-sent events, cancellation."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from petportrait.accounts.deps import CurrentUser
from petportrait.http import ServicesDep, SessionDep
from petportrait.jobs import service
from petportrait.jobs.models import FINAL_STATES, Job
from petportrait.jobs.schemas import JobOut, job_out

router = APIRouter(tags=["jobs"])
POLL_SECONDS = 0.25
KEEPALIVE_SECONDS = 15.0


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


@router.get(
    "/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "progress events, then `end`"}},
)
def job_events(
    job_id: str, user: CurrentUser, session: SessionDep, services: ServicesDep
) -> StreamingResponse:
    """Server-sent events: `progress` (never going backwards), then `end` with the final state."""
    service.get_job_for_owner(session, owner_id=user.id, job_id=job_id)
    session.commit()  # hold no transaction open while the stream lasts
    factory = services.session_factory

    def stream() -> Iterator[bytes]:
        last_fraction = -1.0
        last_state = ""
        last_sent = time.monotonic()
        yield b"retry: 2000\n\n"
        while True:
            with factory() as poll:
                job = poll.get(Job, job_id)
                if job is None:
                    yield _sse("end", {"id": job_id, "state": "deleted"})
                    return
                out = job_out(job)
            data = out.model_dump(mode="json")
            if out.state in FINAL_STATES:
                if out.state == "succeeded" and last_fraction < 1.0:
                    yield _sse("progress", data)
                yield _sse("end", data)
                return
            if out.progress.fraction > last_fraction or out.state != last_state:
                if (
                    out.progress.fraction < last_fraction
                ):  # a retry restarts its steps: never show a step back
                    data["progress"]["fraction"] = last_fraction
                last_fraction = max(last_fraction, out.progress.fraction)
                last_state = out.state
                last_sent = time.monotonic()
                yield _sse("progress", data)
            elif time.monotonic() - last_sent > KEEPALIVE_SECONDS:
                last_sent = time.monotonic()
                yield b": keep-alive\n\n"
            time.sleep(POLL_SECONDS)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
