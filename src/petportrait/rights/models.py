"""Rights tables: generation records, licences, content reports, trust & safety cases, notices."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from petportrait.db import Base, IdMixin


class Generation(IdMixin, Base):
    """How a render was made: model, prompt, seed, parameters and the hash of what came out.

    Kept after the image itself is deleted, so that its licence can still be verified.
    """

    __tablename__ = "generations"

    render_id: Mapped[str] = mapped_column(String(32), unique=True)
    owner_id: Mapped[str] = mapped_column(String(32), index=True)
    model_id: Mapped[str | None] = mapped_column(String(32), default=None)
    base_model: Mapped[str | None] = mapped_column(String(512), default=None)
    is_preview: Mapped[bool] = mapped_column(Boolean, default=False)
    style: Mapped[str | None] = mapped_column(String(64), default=None)
    prompt: Mapped[str | None] = mapped_column(Text, default=None)
    seed: Mapped[int] = mapped_column(BigInteger)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    content_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class LicenceStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class Licence(IdMixin, Base):
    """The person's exclusive licence to reproduce and display one generation."""

    __tablename__ = "licences"

    render_id: Mapped[str] = mapped_column(String(32), unique=True)
    generation_id: Mapped[str] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"))
    holder_id: Mapped[str] = mapped_column(String(32), index=True)
    holder_pseudonym: Mapped[str] = mapped_column(String(40))
    content_sha256: Mapped[str] = mapped_column(String(64), index=True)
    terms_version: Mapped[str] = mapped_column(String(32))
    granted_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default=LicenceStatus.ACTIVE.value)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_by_case_id: Mapped[str | None] = mapped_column(String(32), default=None)


class ContentReport(IdMixin, Base):
    """A report about an item by anyone with a link."""

    __tablename__ = "content_reports"

    licence_id: Mapped[str] = mapped_column(String(32), index=True)
    url: Mapped[str | None] = mapped_column(String(2048), default=None)
    reason: Mapped[str] = mapped_column(String(64))
    details: Mapped[str] = mapped_column(Text, default="")
    contact: Mapped[str | None] = mapped_column(String(320), default=None)
    reporter_id: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime]
    case_id: Mapped[str | None] = mapped_column(String(32), default=None)


class CaseState(StrEnum):
    OPEN = "open"  # opened, no notice yet
    NOTICE_SENT = "notice_sent"  # the cure period runs
    FIX_CLAIMED = "fix_claimed"  # the person replied in the cure period: only staff, having read it, decide
    CURED = "cured"  # fixed in time: rights stay
    DISMISSED = "dismissed"  # no violation: rights stay
    REVOKED = "revoked"  # not cured in time, or clearly illegal or abusive
    APPEALED = "appealed"  # reopened by the person's appeal


class SafetyCase(IdMixin, Base):
    """A trust & safety case about one person's item (a render and its licence)."""

    __tablename__ = "safety_cases"
    __table_args__ = (
        Index("ix_safety_cases_subject", "subject_kind", "subject_id"),
        Index("ix_safety_cases_deadline", "state", "cure_deadline"),
    )

    owner_id: Mapped[str] = mapped_column(String(32), index=True)
    subject_kind: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(String(32))
    licence_id: Mapped[str | None] = mapped_column(String(32), default=None)
    report_id: Mapped[str | None] = mapped_column(String(32), default=None)
    opened_by: Mapped[str] = mapped_column(String(32))
    opened_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16), default=CaseState.OPEN.value)
    policy_version: Mapped[str] = mapped_column(String(32))
    policy_clause: Mapped[str] = mapped_column(String(16))
    facts: Mapped[str] = mapped_column(Text)
    cure_deadline: Mapped[datetime | None] = mapped_column(default=None)
    clearly_illegal: Mapped[bool] = mapped_column(Boolean, default=False)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)


class CaseEvent(IdMixin, Base):
    """One step of a case, shown to the person: a notice, a reply, a cure, a decision, an appeal."""

    __tablename__ = "safety_case_events"

    case_id: Mapped[str] = mapped_column(ForeignKey("safety_cases.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)  # the step's place in its case's timeline
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(16))  # "trust_safety", "you", "service"
    body: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Notice(IdMixin, Base):
    """A written notice to the person with its statement of reasons."""

    __tablename__ = "safety_notices"

    case_id: Mapped[str] = mapped_column(ForeignKey("safety_cases.id", ondelete="CASCADE"), index=True)
    owner_id: Mapped[str] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # cure_notice, revocation, reinstatement, cured, ...
    sent_at: Mapped[datetime]
    statement: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
