"""API shapes of webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class EndpointCreate(BaseModel):
    url: str = Field(max_length=2048)
    events: list[str] = Field(min_length=1, max_length=20)


class EndpointOut(BaseModel):
    id: str
    url: str
    events: list[str]
    created_at: datetime
    disabled_at: datetime | None = None
    disabled_reason: str | None = None


class EndpointCreated(EndpointOut):
    secret: str = Field(description="The signing secret (whsec_...); shown only in this answer.")


class DeliveryOut(BaseModel):
    id: str
    event: str
    state: str
    attempts: int
    last_status: int | None = None
    last_error: str | None = None
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None = None
    payload: dict[str, Any]
