"""Pets API shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from petportrait.pets.models import Species
from petportrait.text import forbidden_character


class PetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    species: Species

    @field_validator("name")
    @classmethod
    def _clean_name(cls, value: str) -> str:
        value = value.strip()
        if not value or forbidden_character(value) is not None:
            raise ValueError(
                "name must be non-empty plain text on one line (no control or separator characters)"
            )
        return value


class PetOut(BaseModel):
    id: str
    name: str
    species: str
    created_at: datetime
    photo_count: int = 0


class PhotoOut(BaseModel):
    id: str
    pet_id: str
    original_filename: str
    content_type: str
    size: int
    width: int
    height: int
    sha256: str
    uploaded_at: datetime
    expires_at: datetime
    content_url: str
    masking: bool = True  # trained with its subject mask (shown over the photo at mask_url)
    mask_url: str = ""


class PhotoMaskingUpdate(BaseModel):
    masking: bool


class UploadResult(BaseModel):
    filename: str
    status: Literal["stored", "rejected"]
    photo: PhotoOut | None = None
    code: str | None = None
    detail: str | None = None


class UploadOut(BaseModel):
    stored: int
    rejected: int
    results: list[UploadResult]
