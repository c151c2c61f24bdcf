"""Delivering the outbox: a periodic task claims the messages that are due, sends them and confirms.

Delivery guarantee (honestly): at least once, never lost, and a duplicate only in one narrow window.
A deliverer claims a row (state `sending`, `claimed_until` = now + email.claim_seconds) and commits before it
talks to the server; after the server accepted the message it marks the row `sent`. If the process dies
between the server's acceptance and that commit, the row stays `sending` until its claim expires and is then
sent again, with the SAME Message-ID. A receiving server or mail client that de-duplicates on Message-ID
(most do when threading) shows it once; one that does not shows it twice. A message is never sent twice
while its claim is held, and never dropped: a failed attempt goes back to `pending` with exponential
backoff, and after email.max_attempts it is `failed` and listed for staff (GET /api/v1/staff/outbox).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from petportrait.clock import utcnow
from petportrait.notifications import mail, messages
from petportrait.notifications.models import OutboxMessage, OutboxState
from petportrait.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class DeliveryReport:
    sent: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, ... capped at 1 hour."""
    return timedelta(seconds=min(3600.0, 30.0 * 2 ** max(0, attempts - 1)))


def _due_clause(now: datetime) -> Any:
    return or_(
        and_(OutboxMessage.state == OutboxState.PENDING.value, OutboxMessage.next_attempt_at <= now),
        and_(OutboxMessage.state == OutboxState.SENDING.value, OutboxMessage.claimed_until < now),
    )


def redact(text: str, *, address: str, user_id: str | None) -> str:
    """An error as stored and logged: the recipient's address (and its local part) replaced by the account."""
    if not address:
        return text
    who = f"<user {user_id}>" if user_id else "<recipient>"
    local = address.partition("@")[0]
    text = re.sub(re.escape(address), who, text, flags=re.IGNORECASE)
    if len(local) >= 3:
        text = re.sub(re.escape(local), who, text, flags=re.IGNORECASE)
    return text


def claim(session: Session, row_id: str, *, worker_id: str, now: datetime, ttl: timedelta) -> bool:
    result = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == row_id, _due_clause(now))
        .values(
            state=OutboxState.SENDING.value,
            claimed_by=worker_id,
            claimed_until=now + ttl,
            attempts=OutboxMessage.attempts + 1,
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def deliver_due(
    session_factory: sessionmaker[Session],
    settings: Settings,
    *,
    worker_id: str,
    transport: mail.Transport | None = None,
    now: datetime | None = None,
) -> DeliveryReport:
    """Send the messages that are due (claim, send, confirm), one SMTP connection for the batch."""
    report = DeliveryReport()
    now = now or utcnow()
    cfg = settings.email
    ttl = timedelta(seconds=cfg.claim_seconds)
    with session_factory() as session:
        ids = list(
            session.scalars(
                select(OutboxMessage.id)
                .where(_due_clause(now))
                .order_by(OutboxMessage.next_attempt_at)
                .limit(cfg.batch)
            )
        )
    if not ids:
        return report
    transport = transport or mail.transport_for(
        cfg.smtp_url, outbox_dir=settings.outbox_dir, timeout=cfg.timeout_seconds
    )
    base = settings.public_base_url
    try:
        for row_id in ids:
            with session_factory() as session:
                if not claim(session, row_id, worker_id=worker_id, now=now, ttl=ttl):
                    continue
                row = session.get(OutboxMessage, row_id, populate_existing=True)
                if row is None:
                    continue
                try:  # building is inside the failure handling: a message that cannot be built fails alone
                    message = mail.build(
                        message_id=row.message_id,
                        sender=cfg.from_address,
                        to=row.to_address,
                        subject=row.subject,
                        text=row.text_body.replace(messages.BASE_URL_MARK, base),
                        html=row.html_body.replace(messages.BASE_URL_MARK, base),
                        date=row.created_at,
                    )
                except Exception as exc:  # no later attempt can build it: failed now, listed for staff
                    _failed(
                        session,
                        row,
                        worker_id=worker_id,
                        error=f"the message cannot be built: {type(exc).__name__}: {exc}",
                        max_attempts=row.attempts,
                        report=report,
                    )
                    continue
                try:
                    path = transport.send(message, outbox_id=row.id)
                except Exception as exc:
                    _failed(
                        session,
                        row,
                        worker_id=worker_id,
                        error=redact(
                            f"{type(exc).__name__}: {exc}", address=row.to_address, user_id=row.user_id
                        ),
                        max_attempts=cfg.max_attempts,
                        report=report,
                    )
                    continue
                values: dict[str, Any] = {
                    "state": OutboxState.SENT.value,
                    "sent_at": utcnow(),
                    "claimed_by": None,
                    "claimed_until": None,
                    "last_error": None,
                    "eml_path": path,
                }
                if row.kind == "account_erased":  # the last message to that address: forget it once sent
                    # (the next sweep deletes the row and its .eml file)
                    values.update(
                        to_address="", text_body="", html_body="", subject="", retain_until=utcnow()
                    )
                session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id == row.id, OutboxMessage.claimed_by == worker_id)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
                session.commit()
                report.sent.append(row.id)
    finally:
        transport.close()
    if report.sent or report.failed or report.retried:
        log.info(
            "outbox: sent %d, retrying %d, failed %d",
            len(report.sent),
            len(report.retried),
            len(report.failed),
        )
    return report


def _failed(
    session: Session,
    row: OutboxMessage,
    *,
    worker_id: str,
    error: str,
    max_attempts: int,
    report: DeliveryReport,
) -> None:
    now = utcnow()
    gave_up = row.attempts >= max_attempts
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == row.id, OutboxMessage.claimed_by == worker_id)
        .values(
            state=OutboxState.FAILED.value if gave_up else OutboxState.PENDING.value,
            next_attempt_at=now + backoff(row.attempts),
            claimed_by=None,
            claimed_until=None,
            last_error=error[:2000],
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    (report.failed if gave_up else report.retried).append(row.id)
    log.warning("email %s to user %s: attempt %d failed: %s", row.id, row.user_id, row.attempts, error)


def retry(session: Session, *, message_id: str) -> OutboxMessage | None:
    """Staff: send a failed message again now."""
    row = session.get(OutboxMessage, message_id)
    if row is None or row.state != OutboxState.FAILED.value:
        return None
    row.state = OutboxState.PENDING.value
    row.attempts = 0
    row.next_attempt_at = utcnow()
    session.flush()
    return row


def problems(session: Session, *, limit: int = 100) -> list[OutboxMessage]:
    """Staff: messages that failed for good, and those still retrying after a failure, newest first."""
    return list(
        session.scalars(
            select(OutboxMessage)
            .where(
                or_(
                    OutboxMessage.state == OutboxState.FAILED.value,
                    and_(
                        OutboxMessage.state == OutboxState.PENDING.value,
                        OutboxMessage.last_error.is_not(None),
                    ),
                )
            )
            .order_by(OutboxMessage.created_at.desc())
            .limit(limit)
        )
    )
