"""Trained models of a pet (LoRA weights) and the portraits rendered from them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from petportrait.db import Base, IdMixin


class JobKind(StrEnum):
    """The kinds of job the portraits domain registers handlers for."""

    TRAIN = "train"
    RENDER = "render"


class ModelState(StrEnum):
    QUEUED = "queued"
    TRAINING = "training"
    READY = "ready"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RenderState(StrEnum):
    QUEUED = "queued"
    RENDERING = "rendering"
    READY = "ready"
    FAILED = "failed"
    CANCELLED = "cancelled"


class PetModel(IdMixin, Base):
    """LoRA weights trained on one pet's photos; kept until expires_at (trained_at + 7 days)."""

    __tablename__ = "pet_models"
    retention_kind: ClassVar[str] = "model"
    __table_args__ = (Index("ix_pet_models_expires_at", "expires_at"),)

    pet_id: Mapped[str] = mapped_column(ForeignKey("pets.id", ondelete="CASCADE"), index=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(16), default=ModelState.QUEUED.value)
    base_model: Mapped[str] = mapped_column(String(512))
    is_preview: Mapped[bool] = mapped_column(Boolean, default=False)
    token: Mapped[str] = mapped_column(String(32))
    species: Mapped[str] = mapped_column(String(16))
    photo_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    retrained_from: Mapped[str | None] = mapped_column(String(32), default=None)
    storage_key: Mapped[str | None] = mapped_column(String(512), default=None)
    size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    final_loss: Mapped[float | None] = mapped_column(default=None)
    # DreamBench's scores of the model (``petportrait eval``): dino, clip_i, clip_t...; None: not measured.
    likeness: Mapped[dict[str, float | int] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime]
    trained_at: Mapped[datetime | None] = mapped_column(default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)


class Render(IdMixin, Base):
    """One rendered portrait; kept until expires_at (rendered_at + 30 days)."""

    __tablename__ = "renders"
    retention_kind: ClassVar[str] = "render"
    __table_args__ = (Index("ix_renders_expires_at", "expires_at"),)

    model_id: Mapped[str] = mapped_column(
        ForeignKey("pet_models.id", ondelete="SET NULL"), nullable=True, index=True
    )
    pet_id: Mapped[str] = mapped_column(ForeignKey("pets.id", ondelete="CASCADE"), index=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default=RenderState.QUEUED.value)
    style: Mapped[str | None] = mapped_column(String(64), default=None)
    prompt: Mapped[str | None] = mapped_column(Text, default=None)
    seed: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    is_preview: Mapped[bool] = mapped_column(Boolean, default=False)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    storage_key: Mapped[str | None] = mapped_column(String(512), default=None)
    content_type: Mapped[str | None] = mapped_column(String(64), default=None)
    size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime]
    rendered_at: Mapped[datetime | None] = mapped_column(default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)


# What a render's parameters may say that fingerprints content outliving it: the LoRA's hash and, in its
# metadata, the hashes of the training photos.
_FINGERPRINT_KEYS = frozenset({"lora_sha256", "photo_sha256"})


def without_fingerprints(
    params: dict[str, Any], *, keys: frozenset[str] = _FINGERPRINT_KEYS
) -> dict[str, Any]:
    """Render parameters without the photos' and the LoRA's hashes (at any depth): what a generation
    record keeps; a render row itself keeps the LoRA's hash (`keys={"photo_sha256"}`) while it lives."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k not in keys}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    result: dict[str, Any] = clean(dict(params))
    return result
