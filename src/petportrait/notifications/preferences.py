"""What the person gets by email: their time zone and which optional categories they want."""

from __future__ import annotations

from sqlalchemy.orm import Session

from petportrait.clock import utcnow
from petportrait.errors import InvalidInput
from petportrait.notifications import messages
from petportrait.notifications.models import OPTIONAL_CATEGORIES, Category, EmailPreference


def preferences(session: Session, *, user_id: str) -> EmailPreference:
    """The person's email preferences (the defaults when they never changed them)."""
    pref = session.get(EmailPreference, user_id)
    if pref is None:
        pref = EmailPreference(
            user_id=user_id, timezone="UTC", job_messages=True, reminders=True, updated_at=utcnow()
        )
    return pref


def set_preferences(
    session: Session,
    *,
    user_id: str,
    timezone: str | None = None,
    job_messages: bool | None = None,
    reminders: bool | None = None,
) -> EmailPreference:
    """Change what the person gets by email; legal and security messages cannot be turned off."""
    pref = session.get(EmailPreference, user_id)
    if pref is None:
        pref = preferences(session, user_id=user_id)
        session.add(pref)
    if timezone is not None:
        if messages.zone(timezone).key != timezone:
            raise InvalidInput(
                f"{timezone!r} is not a time zone; use a name such as Europe/Paris or UTC.",
                code="invalid_timezone",
            )
        pref.timezone = timezone
    if job_messages is not None:
        pref.job_messages = job_messages
    if reminders is not None:
        pref.reminders = reminders
    pref.updated_at = utcnow()
    session.flush()
    return pref


def wants(session: Session, user_id: str, category: str) -> bool:
    """Whether the person wants a message of this category (legal and security ones always)."""
    if category not in OPTIONAL_CATEGORIES:
        return True
    pref = preferences(session, user_id=user_id)
    return pref.job_messages if category == Category.JOB.value else pref.reminders
