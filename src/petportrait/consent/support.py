"""Support cases: a person opens one naming items; support staff may view those items while it is open
(at most 7 days, or until the person closes it)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from petportrait.clock import utcnow
from petportrait.consent.models import SupportCase
from petportrait.errors import InvalidInput, NotFound
from petportrait.pets.models import Photo
from petportrait.portraits.models import PetModel, Render
from petportrait.registry import settings_of
from petportrait.retention import audit, policy
from petportrait.settings import Settings

SCOPABLE: dict[str, Any] = {"photo": Photo, "model": PetModel, "render": Render}


def open_case(
    session: Session,
    *,
    owner_id: str,
    subject: str,
    items: list[tuple[str, str]],
    days: float,
    settings: Settings,
) -> SupportCase:
    """Open a support case naming the person's own items; it ends after `days` (at most 7)."""
    limit = settings.rights.support_case_max_days
    if not 0 < days <= limit:
        raise InvalidInput(
            f"A support case lasts more than 0 and at most {limit:g} days.", code="invalid_days"
        )
    if not items or not subject.strip():
        raise InvalidInput("Say what the case is about and name at least one item.", code="invalid_case")
    named: list[dict[str, str]] = []
    now = utcnow()
    for kind, item_id in dict.fromkeys(items):
        model = SCOPABLE.get(kind)
        row = session.get(model, item_id) if model is not None else None
        if (
            row is None
            or row.owner_id != owner_id
            or policy.is_expired(row, now, settings=settings_of(session))
        ):
            raise NotFound(f"No such {kind}.", code="item_not_found")
        named.append({"kind": kind, "id": item_id})
    case = SupportCase(
        owner_id=owner_id,
        subject=subject.strip(),
        items=named,
        opened_at=now,
        ends_at=now + timedelta(days=days),
    )
    session.add(case)
    session.flush()
    audit.record(
        session,
        action="support_case.opened",
        actor_id=owner_id,
        subject_kind="support_case",
        subject_id=case.id,
        owner_id=owner_id,
        purpose="support",
        details={"items": named, "ends_at": case.ends_at.isoformat()},
    )
    return case


def cases_of(session: Session, *, owner_id: str) -> list[SupportCase]:
    return list(
        session.scalars(
            select(SupportCase).where(SupportCase.owner_id == owner_id).order_by(SupportCase.opened_at.desc())
        )
    )


def is_open(case: SupportCase, now: datetime | None = None) -> bool:
    return case.closed_at is None and (now or utcnow()) < case.ends_at


def close_case(session: Session, *, owner_id: str, case_id: str) -> SupportCase:
    """The person closes the case; staff access through it ends at once."""
    case = session.get(SupportCase, case_id)
    if case is None or case.owner_id != owner_id:
        raise NotFound("No such support case.", code="support_case_not_found")
    if case.closed_at is None:
        case.closed_at = utcnow()
        audit.record(
            session,
            action="support_case.closed",
            actor_id=owner_id,
            subject_kind="support_case",
            subject_id=case.id,
            owner_id=owner_id,
            purpose="support",
        )
    return case


def open_cases(session: Session, *, owner_id: str | None = None) -> list[SupportCase]:
    """Cases support staff may work on now (without their items' content); of one owner if given."""
    query = select(SupportCase).where(SupportCase.closed_at.is_(None), SupportCase.ends_at > utcnow())
    if owner_id is not None:
        query = query.where(SupportCase.owner_id == owner_id)
    return list(session.scalars(query.order_by(SupportCase.opened_at)))


def case_naming(session: Session, *, owner_id: str, kind: str, item_id: str) -> SupportCase | None:
    """An open case of the owner that names this item, or None."""
    for case in open_cases(session, owner_id=owner_id):
        if {"kind": kind, "id": item_id} in case.items:
            return case
    return None


def close_all_on_erasure(session: Session, user_id: str, actor_id: str | None) -> None:
    """Erasure hook: close every open support case of the account in the erasing transaction, so staff
    access through them ends at once (not at the next sweep, and not only after a legal hold ends)."""
    now = utcnow()
    cases = session.scalars(
        select(SupportCase).where(SupportCase.owner_id == user_id, SupportCase.closed_at.is_(None))
    ).all()
    for case in cases:
        case.closed_at = now
    if cases:
        audit.record_many(
            session,
            [
                audit.AuditEvent(
                    action="support_case.closed",
                    actor_id=actor_id,
                    subject_kind="support_case",
                    subject_id=case.id,
                    owner_id=user_id,
                    purpose="erasure",
                )
                for case in cases
            ],
        )
def erase_cases(session: Session, user_id: str, actor_id: str | None) -> None:
    """Erasure hook: the account's support cases (their subject is the person's own text) are deleted."""
    _ = actor_id
    session.execute(
        delete(SupportCase)
        .where(SupportCase.owner_id == user_id)
        .execution_options(synchronize_session=False)
    )
