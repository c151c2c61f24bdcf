"""Pets and their photos."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, true
from sqlalchemy.orm import Mapped, mapped_column

from petportrait.db import Base, IdMixin


class Species(StrEnum):
    DOG = "dog"
    CAT = "cat"
    RABBIT = "rabbit"
    BIRD = "bird"
    OTHER = "other"


class Pet(IdMixin, Base):
    __tablename__ = "pets"

    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    species: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]


class Photo(IdMixin, Base):
    """A sanitised photo: metadata stripped, re-encoded; kept until expires_at (uploaded_at + 30 days)."""

    __tablename__ = "photos"
    retention_kind: ClassVar[str] = "photo"
    __table_args__ = (
        Index("ix_photos_expires_at", "expires_at"),
        Index("ix_photos_pet_id_source_sha256", "pet_id", "source_sha256"),
    )

    pet_id: Mapped[str] = mapped_column(ForeignKey("pets.id", ondelete="CASCADE"), index=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    storage_key: Mapped[str] = mapped_column(String(512), unique=True)
    original_filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    phash: Mapped[str] = mapped_column(String(16))
    # SHA-256 of the bytes as uploaded (before sanitising): a byte-identical re-upload is refused undecoded.
    source_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    # Train with this photo's subject mask (made in memory, never stored); the person may turn it off.
    masking: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    uploaded_at: Mapped[datetime]
    expires_at: Mapped[datetime]
