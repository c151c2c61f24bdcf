"""Single-use links sent by email (verify an address, reset a password): a random secret goes in the link,
only its SHA-256 is stored, it is short-lived and works once; issuing a new one retires the older ones."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from petportrait.accounts.models import EmailPurpose, EmailToken, User
from petportrait.clock import utcnow

LINK_PREFIX = "pl_"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue(
    session: Session, *, user: User, purpose: EmailPurpose, lifetime: timedelta
) -> tuple[str, EmailToken]:
    """A new link secret for the person (shown only in the email); earlier unused ones of the purpose end."""
    now = utcnow()
    session.execute(
        update(EmailToken)
        .where(
            EmailToken.user_id == user.id, EmailToken.purpose == purpose.value, EmailToken.used_at.is_(None)
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    secret = LINK_PREFIX + secrets.token_urlsafe(32)
    row = EmailToken(
        user_id=user.id,
        purpose=purpose.value,
        token_hash=_digest(secret),
        created_at=now,
        expires_at=now + lifetime,
    )
    session.add(row)
    session.flush()
    return secret, row


def consume(session: Session, *, secret: str, purpose: EmailPurpose) -> User | None:
    """The live account a valid, unused, unexpired link names, marking the link used; None otherwise."""
    if not secret.startswith(LINK_PREFIX) or len(secret) > 128:
        return None
    now = utcnow()
    row = session.scalar(
        select(EmailToken).where(
            EmailToken.token_hash == _digest(secret), EmailToken.purpose == purpose.value
        )
    )
    if row is None or row.used_at is not None or row.expires_at <= now:
        return None
    used = session.execute(
        update(EmailToken)
        .where(EmailToken.id == row.id, EmailToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if not used.rowcount:  # type: ignore[attr-defined]
        return None  # used by a concurrent request
    user = session.get(User, row.user_id)
    if user is None or user.deleted_at is not None:
        return None
    return user


def sweep(session: Session) -> int:
    """Delete links used or expired more than a day ago."""
    cutoff = utcnow() - timedelta(days=1)
    result = session.execute(
        delete(EmailToken)
        .where(or_(EmailToken.expires_at < cutoff, EmailToken.used_at < cutoff))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
