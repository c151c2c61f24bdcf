"""Legal holds: an admin suspends deletion of named items, or of a whole account, with a reason and an end.

A hold is active from when it is placed until `ends_at` or until it is released, whichever is first.
While it is active neither the sweeper nor a person's own deletion removes what it covers; the items
stay hidden from the person once expired (a hold keeps data, it does not show it). Placing and
releasing a hold is audited (lifecycle/holds.py); this module says what a hold covers.

A hold's reason and notes are free text an admin wrote (they may name people): they live in the hold's row
and the audit log's deletable text table while the hold is in force and for `REASON_DAYS` after it ends,
then `end_reasons` blanks the row's reason and deletes the texts; erasing the account deletes the texts at
once (the row's reason stays only while the hold is in force).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, or_, select, update
from sqlalchemy.orm import Session

from petportrait.clock import utcnow
from petportrait.errors import Conflict
from petportrait.retention.models import HoldScope, LegalHold

HOLD_TEXT = "legal_hold"
"""The subject kind of a hold's free text in the audit log's text table."""

REASON_DAYS = 30
"""How long a hold's reason is kept after the hold ends (for the record of why data was kept)."""


class LegalHoldActive(Conflict):
    """Deletion refused: a legal hold covers the item."""

    code = "legal_hold"
    title = "Held for legal reasons"


def active_at_clause(at: datetime) -> ColumnElement[bool]:
    """SQL: the holds in force at `at`."""
    return and_(
        LegalHold.placed_at <= at,
        LegalHold.ends_at > at,
        or_(LegalHold.released_at.is_(None), LegalHold.released_at > at),
    )


def _covers_clause(kind: str, id_column: Any, owner_column: Any) -> ColumnElement[bool]:
    """SQL: whether a hold's scope takes in the row (by its id, or its owner's whole account)."""
    return or_(
        and_(LegalHold.scope == HoldScope.ACCOUNT.value, LegalHold.owner_id == owner_column),
        and_(
            LegalHold.scope == HoldScope.ITEM.value,
            LegalHold.subject_kind == kind,
            LegalHold.subject_id == id_column,
        ),
    )


def held_clause(kind: str, id_column: Any, owner_column: Any, *, at: datetime) -> ColumnElement[bool]:
    """SQL: whether a hold in force at `at` covers the row (by its id, or its owner's whole account)."""
    return exists().where(active_at_clause(at), _covers_clause(kind, id_column, owner_column))


def held_since_clause(
    kind: str, id_column: Any, owner_column: Any, *, since: datetime, now: datetime
) -> ColumnElement[bool]:
    """SQL: whether a hold covered the row at any moment from `since` to `now`."""
    return exists().where(
        LegalHold.placed_at <= now,
        LegalHold.ends_at > since,
        or_(LegalHold.released_at.is_(None), LegalHold.released_at > since),
        _covers_clause(kind, id_column, owner_column),
    )


def hold_covering(
    session: Session, *, kind: str, item_id: str, owner_id: str, now: datetime | None = None
) -> LegalHold | None:
    """The hold in force that covers an item, if any."""
    now = now or utcnow()
    return session.scalars(
        select(LegalHold)
        .where(
            active_at_clause(now),
            or_(
                and_(LegalHold.scope == HoldScope.ACCOUNT.value, LegalHold.owner_id == owner_id),
                and_(
                    LegalHold.scope == HoldScope.ITEM.value,
                    LegalHold.subject_kind == kind,
                    LegalHold.subject_id == item_id,
                ),
            ),
        )
        .order_by(LegalHold.placed_at)
        .limit(1)
    ).first()


def ensure_not_held(session: Session, *, kind: str, item_id: str, owner_id: str) -> None:
    """Raise 409 `legal_hold` if a hold in force covers the item."""
    hold = hold_covering(session, kind=kind, item_id=item_id, owner_id=owner_id)
    if hold is not None:
        raise LegalHoldActive(
            "This item is under a legal hold and cannot be deleted now; it will be deleted when the "
            "hold ends.",
            hold_ends_at=hold.ends_at.isoformat(),
        )


def list_holds(
    session: Session, *, active_only: bool = False, now: datetime | None = None
) -> list[LegalHold]:
    """Holds, newest first; only those in force when asked."""
    query = select(LegalHold).order_by(LegalHold.placed_at.desc(), LegalHold.id)
    if active_only:
        query = query.where(active_at_clause(now or utcnow()))
    return list(session.scalars(query))


def is_active(hold: LegalHold, now: datetime | None = None) -> bool:
    """Whether a hold is in force."""
    now = now or utcnow()
    return hold.placed_at <= now < hold.ends_at and (hold.released_at is None or hold.released_at > now)


def ended_clause(at: datetime) -> ColumnElement[bool]:
    """SQL: the holds that had ended by `at` (released, or past their end)."""
    return or_(LegalHold.ends_at <= at, LegalHold.released_at <= at)


def end_reasons(session: Session, *, now: datetime | None = None, owner_id: str | None = None) -> int:
    """Blank the reasons of holds ended more than REASON_DAYS ago (of one erased account: ended at all)
    and delete their free text; returns how many holds. The caller commits."""
    from petportrait.retention import audit

    now = now or utcnow()
    if owner_id is None:
        condition = and_(ended_clause(now - timedelta(days=REASON_DAYS)), LegalHold.reason != "")
    else:
        condition = and_(LegalHold.owner_id == owner_id, ended_clause(now), LegalHold.reason != "")
    ids = list(session.scalars(select(LegalHold.id).where(condition)))
    if ids:
        audit.delete_texts(session, subject_kind=HOLD_TEXT, subject_ids=ids)
        session.execute(
            update(LegalHold)
            .where(LegalHold.id.in_(ids))
            .values(reason="")
            .execution_options(synchronize_session=False)
        )
    return len(ids)


def erase_reasons(session: Session, user_id: str, actor_id: str | None) -> None:
    """Erasure hook: the reasons of the account's ended holds go now (one in force keeps it until it ends)."""
    _ = actor_id
    end_reasons(session, owner_id=user_id)
