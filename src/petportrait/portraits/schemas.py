"""Portraits API shapes: trained models, render requests and renders."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from petportrait.jobs.schemas import JobOut


class ModelOut(BaseModel):
    id: str
    pet_id: str
    state: str
    base_model: str
    is_preview: bool
    retrained_from: str | None
    created_at: datetime
    trained_at: datetime | None
    expires_at: datetime | None
    job_id: str | None = None


class TrainOut(BaseModel):
    model: ModelOut
    job: JobOut


class RenderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    style: str | None = Field(
        default=None, max_length=64, description="A style preset name (GET /api/v1/styles)"
    )
    prompt: str | None = Field(
        default=None, max_length=500, description="Free text; `{pet}` (or the start) stands for your pet"
    )
    negative_prompt: str | None = Field(default=None, max_length=500)
    count: int = Field(default=1, ge=1, le=8)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    width: int | None = Field(default=None, ge=64, le=1536, multiple_of=8)
    height: int | None = Field(default=None, ge=64, le=1536, multiple_of=8)
    steps: int | None = Field(default=None, ge=1, le=100)
    guidance: float | None = Field(default=None, ge=0.0, le=30.0)

    @model_validator(mode="after")
    def _style_or_prompt(self) -> RenderCreate:
        if not self.style and not (self.prompt and self.prompt.strip()):
            raise ValueError("give a style preset or a prompt")
        return self


class RenderOut(BaseModel):
    id: str
    model_id: str | None
    pet_id: str
    job_id: str | None
    state: str
    style: str | None
    prompt: str | None
    seed: int
    width: int
    height: int
    is_preview: bool
    params: dict[str, Any]
    created_at: datetime
    rendered_at: datetime | None
    expires_at: datetime | None
    content_url: str


class RenderRequestOut(BaseModel):
    model_id: str
    retraining: bool
    notice: str | None
    renders: list[RenderOut]
    job: JobOut
    training_job: JobOut | None = None


class StyleOut(BaseModel):
    name: str
    title: str
    prompt: str
    negative_prompt: str
