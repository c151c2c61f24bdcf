"""Portraits API shapes: trained models, render requests and renders."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from petportrait.jobs.schemas import JobOut
from petportrait.portraits.requests import (
    MAX_GUIDANCE,
    MAX_IMAGES,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    MAX_SIDE,
    MAX_STEPS,
    MIN_SIDE,
)


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
    # DreamBench's DINO, CLIP-I and CLIP-T scores once `petportrait eval` measured them; null: not measured
    likeness: dict[str, float | int] | None = None


class TrainOut(BaseModel):
    model: ModelOut
    job: JobOut


class RenderCreate(BaseModel):
    """A render request; its limits are checked by the portraits service (`portraits.requests`), so the
    API, the pages and the CLI give the same answer to the same request."""

    model_config = ConfigDict(extra="forbid")

    style: str | None = Field(default=None, description="A style preset name (GET /api/v1/styles)")
    prompt: str | None = Field(
        default=None,
        description=f"Free text, at most {MAX_PROMPT_CHARS} characters; `{{pet}}` (or the start) is your pet",
    )
    negative_prompt: str | None = Field(default=None, description=f"At most {MAX_PROMPT_CHARS} characters")
    count: int = Field(default=1, description=f"How many portraits, 1 to {MAX_IMAGES}")
    seed: int | None = Field(default=None, description=f"0 to {MAX_SEED}; random when left out")
    width: int | None = Field(default=None, description=f"A multiple of 8 from {MIN_SIDE} to {MAX_SIDE}")
    height: int | None = Field(default=None, description=f"A multiple of 8 from {MIN_SIDE} to {MAX_SIDE}")
    steps: int | None = Field(default=None, description=f"1 to {MAX_STEPS}")
    guidance: float | None = Field(default=None, description=f"0 to {MAX_GUIDANCE:g}")


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
