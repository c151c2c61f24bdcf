"""Consent tables: marketing requests and their items, consents, the marketing library, support cases."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, synonym

from petportrait.db import Base, IdMixin


class Decision(StrEnum):
    PENDING = "pending"
    GRANTED = "granted"
    DECLINED = "declined"


class MarketingRequest(IdMixin, Base):
    """A marketing staff member's request to use named items of one person, on named channels."""

    __tablename__ = "marketing_requests"

    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    requested_by: Mapped[str] = mapped_column(String(32))
    purpose: Mapped[str] = mapped_column(Text)
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    notice_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime]


class MarketingRequestItem(IdMixin, Base):
    """One item named by a request, and the person's answer for it."""

    __tablename__ = "marketing_request_items"

    request_id: Mapped[str] = mapped_column(
        ForeignKey("marketing_requests.id", ondelete="CASCADE"), index=True
    )
    owner_id: Mapped[str] = mapped_column(String(32), index=True)
    item_kind: Mapped[str] = mapped_column(String(16))
    item_id: Mapped[str] = mapped_column(String(32))
    decision: Mapped[str] = mapped_column(String(16), default=Decision.PENDING.value)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    consent_id: Mapped[str | None] = mapped_column(String(32), default=None)


class Consent(IdMixin, Base):
    """A person's consent to use one item in marketing; stands until withdrawn. `receipt` is as issued."""

    __tablename__ = "consents"
    __table_args__ = (Index("ix_consents_item", "item_kind", "item_id"),)

    owner_id: Mapped[str] = mapped_column(String(32), index=True)
    request_id: Mapped[str] = mapped_column(String(32))
    request_item_id: Mapped[str] = mapped_column(String(32), unique=True)
    item_kind: Mapped[str] = mapped_column(String(16))
    item_id: Mapped[str] = mapped_column(String(32))
    purpose: Mapped[str] = mapped_column(Text)
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    notice_version: Mapped[str] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(128))
    receipt: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    granted_at: Mapped[datetime]
    withdrawn_at: Mapped[datetime | None] = mapped_column(default=None)


class MarketingCopy(IdMixin, Base):
    """A copy of a consented item in the marketing library; kept while its consent stands.

    `expires_at` stays empty while the consent stands and is set when it is withdrawn, so that the
    sweeper removes whatever a withdrawal could not (a legal hold, an erased account).
    """

    __tablename__ = "marketing_copies"
    retention_kind: ClassVar[str] = "marketing"
    __table_args__ = (Index("ix_marketing_copies_expires_at", "expires_at"),)

    consent_id: Mapped[str] = mapped_column(String(32), unique=True)
    owner_id: Mapped[str] = mapped_column(String(32), index=True)
    source_kind: Mapped[str] = mapped_column(String(16))
    source_id: Mapped[str] = mapped_column(String(32))
    storage_key: Mapped[str] = mapped_column(String(512), unique=True)
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    copied_at: Mapped[datetime]
    expires_at: Mapped[datetime | None] = mapped_column(default=None)

    # The retention policy's clock for this kind is "consent": when the consent that keeps it was given.
    consent = synonym("copied_at")


class SupportCase(IdMixin, Base):
    """A support case a person opened, naming the items support staff may view while it is open."""

    __tablename__ = "support_cases"

    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    subject: Mapped[str] = mapped_column(Text)
    items: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    opened_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
