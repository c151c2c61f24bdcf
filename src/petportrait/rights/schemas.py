"""API shapes of the rights domain."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ReportCreate(BaseModel):
    licence_id: str | None = Field(default=None, max_length=32)
    url: str | None = Field(default=None, max_length=2048)
    reason: str = Field(max_length=64)
    details: str = Field(default="", max_length=5000)
    contact: str | None = Field(default=None, max_length=320)


class CaseCreate(BaseModel):
    policy_clause: str = Field(max_length=16)
    facts: str = Field(min_length=1, max_length=5000)
    licence_id: str | None = Field(default=None, max_length=32)
    report_id: str | None = Field(default=None, max_length=32)


class NoticeCreate(BaseModel):
    how_to_fix: str = Field(min_length=1, max_length=5000)


class CuredBody(BaseModel):
    note: str = Field(default="", max_length=5000)


class DecideBody(BaseModel):
    outcome: str = Field(max_length=16)
    reasons: str = Field(min_length=1, max_length=5000)


class ClearlyIllegalBody(BaseModel):
    facts: str = Field(min_length=1, max_length=5000)


class ReplyBody(BaseModel):
    message: str = Field(min_length=1, max_length=5000)


class AppealBody(BaseModel):
    statement: str = Field(min_length=1, max_length=5000)
