"""Staff see a person's item only through (a) a consent the person granted, (b) an open support case the
person opened naming it, or (c) a trust & safety case about it. Every view and every refusal is audited;
a refusal looks like nothing is there (404)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from petportrait.accounts import service as accounts_service
from petportrait.accounts.models import Role, User
from petportrait.consent import service as consent_service
from petportrait.consent import support
from petportrait.errors import NotFound
from petportrait.registry import settings_of
from petportrait.retention import audit, policy
from petportrait.rights.models import CaseState, SafetyCase

_CLOSED = (CaseState.CURED.value, CaseState.DISMISSED.value)


@dataclass(frozen=True)
class Basis:
    """Why a staff member may see an item."""

    kind: str  # "support_case", "consent", "trust_safety_case"
    id: str


def _basis(session: Session, staff: User, row: Any, kind: str) -> Basis | None:
    if staff.role == Role.SUPPORT.value:
        case = support.case_naming(session, owner_id=row.owner_id, kind=kind, item_id=row.id)
        return Basis("support_case", case.id) if case is not None else None
    if staff.role == Role.MARKETING.value:
        consent = consent_service.standing_consent_for(session, kind=kind, item_id=row.id)
        return (
            Basis("consent", consent.id) if consent is not None and consent.owner_id == row.owner_id else None
        )
    if staff.role == Role.TRUST_SAFETY.value:
        ts_case = session.scalar(
            select(SafetyCase).where(
                SafetyCase.subject_kind == kind,
                SafetyCase.subject_id == row.id,
                SafetyCase.state.not_in(_CLOSED),
            )
        )
        return Basis("trust_safety_case", ts_case.id) if ts_case is not None else None
    return None  # admins and everyone else: least privilege, no standing access


def _owner_erased(session: Session, owner_id: str) -> bool:
    """Whether the item's account was erased: its items are out of staff reach at once, even while a
    legal hold keeps them from deletion."""
    return accounts_service.is_erased(session, owner_id)


def authorize(session: Session, *, staff: User, kind: str, item_id: str, content: bool) -> tuple[Any, Basis]:
    """The item and the basis on which this staff member may see it; otherwise 404, audited."""
    model = support.SCOPABLE.get(kind)
    row = session.get(model, item_id) if model is not None else None
    basis = None
    if (
        row is not None
        and not policy.is_expired(row, settings=settings_of(session))
        and not _owner_erased(session, row.owner_id)
    ):
        basis = _basis(session, staff, row, kind)
    if row is None or basis is None:
        raise refuse(
            session,
            staff=staff,
            kind=kind,
            item_id=item_id,
            why="no consent, support case or trust & safety case",
            owner_id=row.owner_id if row is not None else None,
            content=content,
        )
    events = [
        audit.AuditEvent(
            action="staff.item_viewed",
            actor_id=staff.id,
            subject_kind=kind,
            subject_id=row.id,
            owner_id=row.owner_id,
            purpose=basis.kind,
            details={"basis_id": basis.id, "content": content, "role": staff.role},
        )
    ]
    if content and kind == "photo":
        events.append(
            audit.AuditEvent(
                action="photo.read",
                actor_id=staff.id,
                subject_kind="photo",
                subject_id=row.id,
                owner_id=row.owner_id,
                purpose=basis.kind,
            )
        )
    audit.record_many(session, events)
    return row, basis


def refuse(
    session: Session,
    *,
    staff: User,
    kind: str,
    item_id: str,
    why: str,
    owner_id: str | None = None,
    content: bool | None = None,
) -> NotFound:
    """Audit a refused staff attempt and return the 404 to raise; the refusal stays on record (committed)
    although the request fails."""
    details: dict[str, Any] = {"why": why}
    if content is not None:
        details["content"] = content
    audit.record(
        session,
        action="staff.access_refused",
        actor_id=staff.id,
        subject_kind=kind,
        subject_id=item_id,
        owner_id=owner_id,
        purpose=staff.role,
        details=details,
    )
    session.commit()
    return NotFound("Nothing here.")
