"""Jobs API shapes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


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
