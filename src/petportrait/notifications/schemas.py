"""API shapes of notifications."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class PreferencesOut(BaseModel):
    timezone: str
    job_messages: bool
    reminders: bool
    always_sent: list[str] = Field(
        default=[
            "legal notices (content policy, consent requests and receipts, erasure)",
            "security messages",
        ]
    )


class PreferencesUpdate(BaseModel):
    timezone: str | None = Field(default=None, max_length=64)
    job_messages: bool | None = None
    reminders: bool | None = None


class OutboxOut(BaseModel):
    id: str
    user_id: str | None
    kind: str
    category: str
    state: str
    attempts: int
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
