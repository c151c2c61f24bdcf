"""Retention tables: the wrapped data key of every blob (see petportrait.retention.keys)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from petportrait.db import Base


class DataKey(Base):
    """The data key of one blob, wrapped by the key-encryption key; deleting the row shreds the blob."""

    __tablename__ = "data_keys"
    __table_args__ = (Index("ix_data_keys_owner_id", "owner_id"),)

    storage_key: Mapped[str] = mapped_column(String(1024), primary_key=True)
    owner_id: Mapped[str | None] = mapped_column(String(32), default=None)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary(128))
    created_at: Mapped[datetime]
