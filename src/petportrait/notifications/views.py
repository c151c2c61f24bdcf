"""Notifications API: the person's email preferences; staff see (and retry) messages that failed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from petportrait.accounts.deps import CurrentUser, require_role
from petportrait.accounts.models import Role, User
from petportrait.errors import NotFound
from petportrait.http import SessionDep
from petportrait.notifications import service
from petportrait.notifications.models import EmailPreference, OutboxMessage
from petportrait.notifications.schemas import OutboxOut, PreferencesOut, PreferencesUpdate

router = APIRouter(tags=["notifications"])
Admin = Annotated[User, require_role(Role.ADMIN, Role.SUPPORT)]


def prefs_out(pref: EmailPreference) -> PreferencesOut:
    return PreferencesOut(timezone=pref.timezone, job_messages=pref.job_messages, reminders=pref.reminders)


def outbox_out(row: OutboxMessage) -> OutboxOut:
    return OutboxOut(
        id=row.id,
        user_id=row.user_id,
        kind=row.kind,
        category=row.category,
        state=row.state,
        attempts=row.attempts,
        last_error=row.last_error,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        sent_at=row.sent_at,
    )


@router.get("/me/email-preferences", response_model=PreferencesOut)
def get_preferences(user: CurrentUser, session: SessionDep) -> PreferencesOut:
    """What the person gets by email, and their time zone."""
    return prefs_out(service.preferences(session, user_id=user.id))


@router.put("/me/email-preferences", response_model=PreferencesOut)
def put_preferences(body: PreferencesUpdate, user: CurrentUser, session: SessionDep) -> PreferencesOut:
    """Turn job messages or reminders on or off, set the time zone; legal and security messages stay on."""
    pref = service.set_preferences(
        session,
        user_id=user.id,
        timezone=body.timezone,
        job_messages=body.job_messages,
        reminders=body.reminders,
    )
    return prefs_out(pref)


@router.get("/staff/outbox", response_model=list[OutboxOut])
def failures(_: Admin, session: SessionDep, limit: int = Query(default=100, ge=1, le=500)) -> list[OutboxOut]:
    """Staff: messages that failed for good, and those retrying after a failure (no bodies)."""
    return [outbox_out(r) for r in service.problems(session, limit=limit)]


@router.post("/staff/outbox/{message_id}/retry", response_model=OutboxOut)
def retry(message_id: str, _: Admin, session: SessionDep) -> OutboxOut:
    """Staff: send a failed message again now."""
    row = service.retry(session, message_id=message_id)
    if row is None:
        raise NotFound("No failed message with that id.", code="message_not_found")
    return outbox_out(row)
