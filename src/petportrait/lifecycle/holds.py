"""Placing, renewing and releasing legal holds (admin operations, audited); what a hold covers is in
retention.holds. An admin suspends deletion of named items, or of a whole account, with a reason and an end.

A hold is active from when it is placed until `ends_at` or until it is released, whichever is first.
While it is active neither the sweeper nor a person's own deletion removes what it covers; the items
stay hidden from the person once expired (a hold keeps data, it does not show it). Placing, renewing and
releasing a hold is audited.

Every hold ends: its end date is required and at most a year away (settings.MAX_HOLD); a hold that must
last longer is renewed, by a person, again at most a year ahead, and each renewal is on record.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from petportrait.accounts import service as accounts_service
from petportrait.clock import utcnow
from petportrait.errors import Conflict, InvalidInput, NotFound
from petportrait.registry import emit, registry_of, settings_of
from petportrait.retention import audit
from petportrait.retention.holds import HOLD_TEXT, active_at_clause, held_clause, is_active, list_holds
from petportrait.retention.models import HoldScope, LegalHold, Tombstone
from petportrait.settings import MAX_HOLD

__all__ = ["active_at_clause", "held_clause", "is_active", "list_holds", "place_hold", "release_hold"]


def place_hold(
    session: Session,
    *,
    scope: HoldScope,
    reason: str,
    ends_at: datetime | None,
    actor_id: str | None,
    owner_id: str | None = None,
    kind: str | None = None,
    item_id: str | None = None,
) -> LegalHold:
    """Place a hold on one item (scope item: kind and item_id) or on an account (scope account: owner_id)."""
    now = utcnow()
    reason = reason.strip()
    if not reason:
        raise InvalidInput("A legal hold needs a reason.", code="hold_reason_required")
    ends_at = _valid_end(ends_at, now=now)
    if scope == HoldScope.ITEM:
        item_models = registry_of(session).item_models
        if kind is None or kind not in item_models or not item_id:
            raise InvalidInput(
                f"An item hold names a kind ({', '.join(item_models)}) and an item id.",
                code="hold_subject_required",
            )
        row = session.get(item_models[kind], item_id)
        if row is None:
            if session.get(Tombstone, item_id) is not None:
                raise Conflict("This item was already deleted.", code="already_deleted")
            raise NotFound("No such item.", code="item_not_found")
        owner_id = row.owner_id
    else:
        if not owner_id or not accounts_service.account_exists(session, owner_id):
            raise NotFound("No such account.", code="account_not_found")
        kind = None
        item_id = None
    assert owner_id is not None
    hold = LegalHold(
        scope=scope.value,
        owner_id=owner_id,
        subject_kind=kind,
        subject_id=item_id,
        reason=reason,
        placed_by=actor_id,
        placed_at=now,
        ends_at=ends_at,
    )
    session.add(hold)
    session.flush()
    audit.record(
        session,
        action="hold.placed",
        actor_id=actor_id,
        subject_kind=kind or "account",
        subject_id=item_id or owner_id,
        owner_id=owner_id,
        purpose="legal_hold",
        details={
            "hold_id": hold.id,
            "scope": scope.value,
            "reason": _text(session, reason, hold),
            "ends_at": ends_at.isoformat(),
        },
    )
    tell_owner(session, hold)
    return hold


def _text(session: Session, value: str, hold: LegalHold) -> dict[str, str] | str:
    """Free text of a hold (reason, note) goes to the deletable text table, never into the chain."""
    if not value:
        return ""
    return audit.text_ref(session, value, owner_id=hold.owner_id, subject_kind=HOLD_TEXT, subject_id=hold.id)


def _valid_end(ends_at: datetime | None, *, now: datetime) -> datetime:
    """The end date of a hold, if it is given, in the future, with a time zone, and at most a year away."""
    if ends_at is None:
        raise InvalidInput(
            "A legal hold needs an end date (at most a year away; it can be renewed).",
            code="hold_end_required",
        )
    if ends_at.tzinfo is None:
        raise InvalidInput(
            "A legal hold's end date needs a time zone (e.g. 2027-01-31T00:00:00Z).", code="hold_end_naive"
        )
    if ends_at <= now:
        raise InvalidInput("A legal hold must end in the future.", code="hold_end_in_past")
    if ends_at > now + MAX_HOLD:
        raise InvalidInput(
            f"A legal hold ends at most {MAX_HOLD.days} days from now (by {(now + MAX_HOLD).isoformat()}); "
            "renew it before it ends if it must last longer.",
            code="hold_too_long",
        )
    return ends_at


def renew_hold(
    session: Session,
    *,
    hold_id: str,
    ends_at: datetime | None,
    actor_id: str | None,
    note: str = "",
    reason: str = "",
) -> LegalHold:
    """Move the end of a hold in force to `ends_at` (at most a year from now), for a new reason (a hold
    does not renew itself on its first ground); audited with both ends; the person is told when the
    settings say the law allows it."""
    hold = session.get(LegalHold, hold_id)
    if hold is None:
        raise NotFound("No such legal hold.", code="hold_not_found")
    now = utcnow()
    if not is_active(hold, now):
        raise Conflict("This legal hold has already ended; place a new one.", code="hold_ended")
    ends_at = _valid_end(ends_at, now=now)
    reason = reason.strip()
    if not reason or reason == hold.reason:
        raise InvalidInput(
            "Each renewal of a legal hold needs a new reason: why the data must still be kept now.",
            code="hold_renewal_reason_required",
        )
    previous = hold.ends_at
    hold.ends_at = ends_at
    session.flush()
    tell_owner(session, hold)
    audit.record(
        session,
        action="hold.renewed",
        actor_id=actor_id,
        subject_kind=hold.subject_kind or "account",
        subject_id=hold.subject_id or hold.owner_id,
        owner_id=hold.owner_id,
        purpose="legal_hold",
        details={
            "hold_id": hold.id,
            "previous_ends_at": previous.isoformat(),
            "ends_at": ends_at.isoformat(),
            "note": _text(session, note, hold),
            "reason": _text(session, reason, hold),
        },
    )
    return hold


def held_days(hold: LegalHold, now: datetime | None = None) -> float:
    """How long the hold has held (or held) its data in all, renewals included, in days."""
    end = min(now or utcnow(), hold.released_at or hold.ends_at, hold.ends_at)
    return max(0.0, (end - hold.placed_at).total_seconds() / 86400)


def tell_owner(session: Session, hold: LegalHold) -> None:
    """Tell the person their data is kept under a hold (until when; not why), where the settings say the
    law allows it (retention.tell_owner_of_holds)."""
    if settings_of(session).retention.tell_owner_of_holds:
        emit(session, "hold.notice", owner_id=hold.owner_id, hold_id=hold.id, ends_at=hold.ends_at)


def release_hold(session: Session, *, hold_id: str, actor_id: str | None, note: str = "") -> LegalHold:
    """End a hold now; what it covered is deleted by the next sweep if its period has passed."""
    hold = session.get(LegalHold, hold_id)
    if hold is None:
        raise NotFound("No such legal hold.", code="hold_not_found")
    now = utcnow()
    if hold.released_at is not None or hold.ends_at <= now:
        raise Conflict("This legal hold has already ended.", code="hold_ended")
    hold.released_at = now
    hold.released_by = actor_id
    session.flush()
    audit.record(
        session,
        action="hold.released",
        actor_id=actor_id,
        subject_kind=hold.subject_kind or "account",
        subject_id=hold.subject_id or hold.owner_id,
        owner_id=hold.owner_id,
        purpose="legal_hold",
        details={"hold_id": hold.id, "note": _text(session, note, hold)},
    )
    return hold
