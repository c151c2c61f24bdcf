"""The outbox table: a message is written in the transaction of the event that causes it, folded with a
pending one of the same group, swept when its retention ends, and listed in the person's export.

What a message names ends it (lineage): the ids in its data (a pet, a model, renders...) are linked when it
is written, and deleting any of them deletes the message and its .eml file in the same transaction
(`end_with`). Erasing an account deletes every message of the account, in every state, and its files
(`erase_messages`); only the erasure receipt is written after, and it is forgotten once sent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from petportrait.accounts.models import User
from petportrait.clock import utcnow
from petportrait.db import new_id
from petportrait.notifications import messages
from petportrait.notifications.messages import Content
from petportrait.notifications.models import Category, OutboxMessage, OutboxState, ReminderSent
from petportrait.notifications.preferences import preferences, wants
from petportrait.registry import settings_of
from petportrait.retention import lineage
from petportrait.text import forbidden_character

STORE = "outbox_messages"
"""This store's name in the data inventory and in lineage links."""

DEFAULT_RETENTION = timedelta(days=30)
ERASED_SUFFIX = "@erased.invalid"
VERIFY_KIND = "verify_email"
RESET_KIND = "password_reset"
SIGNUP_ATTEMPT_KIND = "signup_attempted"
# what an account whose address is not verified may be sent: nothing that carries text its creator chose
FOR_UNVERIFIED = frozenset({VERIFY_KIND, RESET_KIND, SIGNUP_ATTEMPT_KIND})


def one_line(subject: str) -> str:
    """A subject with every control or separator character (kept in names written before they were
    refused) replaced by a space: a header cannot carry them."""
    return "".join(" " if forbidden_character(char) else char for char in subject)


def recipient(session: Session, user_id: str | None) -> User | None:
    """The account a message goes to; None for an erased one (nothing is sent to it but the receipt)."""
    if user_id is None:
        return None
    from petportrait.accounts import service as accounts_service  # not at import: a worker loads no web layer

    user = accounts_service.live_user(session, user_id)
    if user is None or user.email.endswith(ERASED_SUFFIX):
        return None
    return user


def enqueue(
    session: Session,
    *,
    user_id: str | None,
    kind: str,
    category: Category,
    build: Callable[[str], Content],
    data: dict[str, Any] | None = None,
    retain_until: datetime | None = None,
    group_key: str | None = None,
    due: datetime | None = None,
    to_address: str | None = None,
) -> OutboxMessage | None:
    """Write a message for the person in this transaction; None when they turned its category off or
    the account is erased. `build(timezone)` makes the content in the person's time zone."""
    now = utcnow()
    if to_address is None:
        user = recipient(session, user_id)
        if user is None:
            return None
        if user.email_verified_at is None and kind not in FOR_UNVERIFIED:
            return None  # until the address is verified, only the verification message goes to it
        to_address = user.email
    if user_id is not None and not wants(session, user_id, category.value):
        return None
    tz = preferences(session, user_id=user_id).timezone if user_id else "UTC"
    content = build(tz)
    content.footer = content.footer or messages.footer(category.value)
    text, html = messages.render(content)
    content.subject = one_line(content.subject)
    row_id = new_id()
    row = OutboxMessage(
        id=row_id,
        user_id=user_id,
        to_address=to_address,
        kind=kind,
        category=category.value,
        group_key=group_key,
        data=data or {},
        message_id=f"{row_id}@outbox.petportrait",
        subject=content.subject,
        text_body=text,
        html_body=html,
        state=OutboxState.PENDING.value,
        attempts=0,
        next_attempt_at=due or now,
        created_at=now,
        retain_until=max(retain_until or now + DEFAULT_RETENTION, now),
    )
    session.add(row)
    session.flush()
    lineage.link(session, store=STORE, row_id=row.id, subjects=lineage.ids_in(row.data))
    return row


def pending_group(session: Session, group_key: str) -> OutboxMessage | None:
    return session.scalar(
        select(OutboxMessage).where(
            OutboxMessage.group_key == group_key,
            OutboxMessage.state == OutboxState.PENDING.value,
            OutboxMessage.attempts == 0,
        )
    )


def refold(
    session: Session, row: OutboxMessage, build: Callable[[str], Content], *, due: datetime, retain: datetime
) -> None:
    tz = preferences(session, user_id=row.user_id).timezone if row.user_id else "UTC"
    content = build(tz)
    content.footer = content.footer or messages.footer(row.category)
    row.subject = one_line(content.subject)
    row.text_body, row.html_body = messages.render(content)
    row.next_attempt_at = due
    row.retain_until = max(row.retain_until, retain)
    session.flush()
    lineage.link(session, store=STORE, row_id=row.id, subjects=lineage.ids_in(row.data))


def sweep(session: Session, *, outbox_dir: Path, now: datetime | None = None) -> int:
    """Delete sent, failed and cancelled messages (and their .eml files) whose retention ended, and the
    reminder marks of items long gone; returns how many messages went."""
    now = now or utcnow()
    done = [OutboxState.SENT.value, OutboxState.FAILED.value, OutboxState.CANCELLED.value]
    rows = list(
        session.execute(
            select(OutboxMessage.id, OutboxMessage.eml_path)
            .where(OutboxMessage.state.in_(done), OutboxMessage.retain_until <= now)
            .limit(5000)
        )
    )
    ids = _delete_messages(session, rows, outbox_dir=outbox_dir)
    session.execute(
        delete(ReminderSent)
        .where(ReminderSent.item_expires_at < now - timedelta(days=1))
        .execution_options(synchronize_session=False)
    )
    session.flush()
    return len(ids)


def _delete_messages(session: Session, rows: list[Any], *, outbox_dir: Path) -> list[str]:
    """Delete these (id, eml_path) messages, their .eml files and their lineage links."""
    root = outbox_dir.resolve()
    for row_id, path in rows:
        candidate = Path(path) if path else root / f"{row_id}.eml"
        if candidate.resolve().parent == root:
            candidate.unlink(missing_ok=True)
    ids = [r[0] for r in rows]
    lineage.forget(session, store=STORE, row_ids=ids)
    for start in range(0, len(ids), 500):
        session.execute(
            delete(OutboxMessage)
            .where(OutboxMessage.id.in_(ids[start : start + 500]))
            .execution_options(synchronize_session=False)
        )
    return ids


def end_with(session: Session, subject_ids: Sequence[str]) -> int:
    """Lineage: delete the messages (and .eml files) that name any of these deleted items or pets."""
    named = lineage.rows_naming(session, store=STORE, subjects=subject_ids)
    rows: list[Any] = []
    for start in range(0, len(named), 500):
        rows.extend(
            session.execute(
                select(OutboxMessage.id, OutboxMessage.eml_path).where(
                    OutboxMessage.id.in_(named[start : start + 500])
                )
            )
        )
    return len(_delete_messages(session, rows, outbox_dir=settings_of(session).outbox_dir))


def erase_messages(session: Session, user_id: str) -> int:
    """Erasure: every message of the account, in every state, and its .eml file."""
    rows = list(
        session.execute(
            select(OutboxMessage.id, OutboxMessage.eml_path).where(OutboxMessage.user_id == user_id)
        )
    )
    return len(_delete_messages(session, rows, outbox_dir=settings_of(session).outbox_dir))


def export_section(session: Session, user_id: str) -> list[dict[str, Any]]:
    """The person's messages in their data export (what was sent, when; not the bodies again)."""
    return [
        {
            "id": r.id,
            "kind": r.kind,
            "subject": r.subject,
            "state": r.state,
            "created_at": r.created_at.isoformat(),
            "sent_at": r.sent_at.isoformat() if r.sent_at else None,
        }
        for r in session.scalars(select(OutboxMessage).where(OutboxMessage.user_id == user_id))
    ]


def residues(session: Session, settings: Any) -> list[tuple[str, str]]:
    """What this store's rules forbid: an .eml file no message owns, a delivery error keeping the address."""
    out = []
    folder = Path(settings.outbox_dir)
    if folder.is_dir():
        names = [p.stem for p in folder.glob("*.eml")]
        known: set[str] = set()
        for start in range(0, len(names), 500):
            chunk = names[start : start + 500]
            known.update(session.scalars(select(OutboxMessage.id).where(OutboxMessage.id.in_(chunk))))
        out += [("orphan_mail", f"{n}.eml has no message row") for n in names if n not in known]
    query = select(OutboxMessage.id, OutboxMessage.to_address, OutboxMessage.last_error).where(
        OutboxMessage.last_error.is_not(None), OutboxMessage.to_address != ""
    )
    for row_id, address, error in session.execute(query):
        local = address.partition("@")[0].lower()
        if local and local in (error or "").lower():
            out.append(("mail_address_in_error", f"message {row_id} keeps the recipient's address"))
    return out


def outbox_counts(session: Session) -> dict[str, int]:
    """How many outbox messages are in each state (for the metrics; `failed` means retries ran out)."""
    rows = session.execute(select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state)).all()
    counts = {state.value: 0 for state in OutboxState}
    counts.update({state: int(count) for state, count in rows})
    return counts
