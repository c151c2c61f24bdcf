"""Jobs API shapes."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel

if TYPE_CHECKING:
    from petportrait.jobs.models import Job


class Progress(BaseModel):
    step: int
    total: int
    fraction: float
    eta_seconds: float | None


class JobError(BaseModel):
    code: str
    message: str


class JobOut(BaseModel):
    id: str
    kind: str
    state: str
    target_id: str
    attempt: int
    max_attempts: int
    progress: Progress
    message: str | None
    error: JobError | None
    cancel_requested: bool
    waits_for: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    events_url: str


def job_out(job: Job) -> JobOut:
    total = job.progress_total or 0
    step = min(job.progress_step or 0, total) if total else 0
    fraction = 1.0 if job.state == "succeeded" else (step / total if total else 0.0)
    return JobOut(
        id=job.id,
        kind=job.kind,
        state=job.state,
        target_id=job.target_id,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        progress=Progress(step=step, total=total, fraction=round(fraction, 4), eta_seconds=job.eta_seconds),
        message=job.message,
        error=JobError(code=job.error_code, message=job.error_message or "") if job.error_code else None,
        cancel_requested=job.cancel_requested,
        waits_for=job.waits_for,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        events_url=f"/api/v1/jobs/{job.id}/events",
    )
