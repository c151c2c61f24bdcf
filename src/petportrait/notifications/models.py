"""Tables of the notifications domain: the email outbox, each person's email preferences, reminders sent."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from petportrait.db import Base, IdMixin


class Category(StrEnum):
    """Why a message is sent; `job` and `reminder` can be turned off, the others cannot."""

    JOB = "job"
    REMINDER = "reminder"
    LEGAL = "legal"
    SECURITY = "security"


OPTIONAL_CATEGORIES = frozenset({Category.JOB.value, Category.REMINDER.value})


class OutboxState(StrEnum):
    PENDING = "pending"  # waiting for its next attempt (next_attempt_at)
    SENDING = "sending"  # claimed by a deliverer until claimed_until
    SENT = "sent"
    FAILED = "failed"  # gave up after email.max_attempts; visible to staff
    CANCELLED = "cancelled"  # its account was erased before it went out


class OutboxMessage(IdMixin, Base):
    """One email, written in the transaction of the event that causes it and rendered then."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        Index("ix_outbox_messages_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_outbox_messages_retain_until", "retain_until"),
    )

    user_id: Mapped[str | None] = mapped_column(String(32), index=True)
    to_address: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(48))
    category: Mapped[str] = mapped_column(String(16))
    # a key that folds several events into one message while it waits (e.g. the portraits of one model)
    group_key: Mapped[str | None] = mapped_column(String(128), default=None, index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the events' ids, to re-render a group
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    subject: Mapped[str] = mapped_column(String(255))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=OutboxState.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    claimed_until: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    eml_path: Mapped[str | None] = mapped_column(String(1024), default=None)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    # the row (and its .eml file) is deleted after this: when what it mentions is deleted, at the latest
    retain_until: Mapped[datetime]


class EmailPreference(Base):
    """What a person wants by email, and the time zone their dates are written in."""

    __tablename__ = "email_preferences"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    job_messages: Mapped[bool] = mapped_column(Boolean, default=True)
    reminders: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime]


class ReminderSent(Base):
    """That the 3-day reminder of an item went out (or was skipped), so it is never sent twice."""

    __tablename__ = "email_reminders"

    item_kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    item_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(32), index=True)
    item_expires_at: Mapped[datetime] = mapped_column(index=True)
    at: Mapped[datetime]
