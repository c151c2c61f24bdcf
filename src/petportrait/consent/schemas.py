"""API shapes of the consent domain."""

from __future__ import annotations

from pydantic import BaseModel, Field

from petportrait.text import Paragraphs


class ItemRef(BaseModel):
    kind: str = Field(pattern="^(photo|render|model)$")
    id: str = Field(min_length=1, max_length=32)


class MarketingRequestCreate(BaseModel):
    items: list[ItemRef] = Field(min_length=1, max_length=50)
    channels: list[str] = Field(min_length=1, max_length=4)
    purpose: Paragraphs = Field(min_length=1, max_length=2000)
    notice_version: str = Field(min_length=1, max_length=32)


class GrantBody(BaseModel):
    notice_version: str = Field(min_length=1, max_length=32, description="the notice version you were shown")


class SupportCaseCreate(BaseModel):
    subject: Paragraphs = Field(min_length=1, max_length=2000)
    items: list[ItemRef] = Field(min_length=1, max_length=50)
    days: float = Field(default=7, gt=0, le=7)
