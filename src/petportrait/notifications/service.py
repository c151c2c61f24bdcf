"""Email through an outbox: messages are written in the transaction of the event that causes them, and a
periodic task delivers them.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from petportrait.accounts.models import ApiToken, User
from petportrait.clock import utcnow
from petportrait.db import new_id
from petportrait.errors import InvalidInput
from petportrait.notifications import mail, messages
from petportrait.notifications.messages import Content, Link
from petportrait.notifications.models import (
    OPTIONAL_CATEGORIES,
    Category,
    EmailPreference,
    OutboxMessage,
    OutboxState,
    ReminderSent,
)
from petportrait.registry import Event
from petportrait.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_RETENTION = timedelta(days=30)
REMINDER_AHEAD = timedelta(days=3)
RENDER_FOLD_FALLBACK = timedelta(minutes=10)
ERASED_SUFFIX = "@erased.invalid"


# ---- preferences --------------------------------------------------------------------------------------


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


# ---- writing to the outbox ----------------------------------------------------------------------------


def _wants(session: Session, user_id: str, category: str) -> bool:
    if category not in OPTIONAL_CATEGORIES:
        return True
    pref = preferences(session, user_id=user_id)
    return pref.job_messages if category == Category.JOB.value else pref.reminders


def _recipient(session: Session, user_id: str | None) -> User | None:
    """The account a message goes to; None for an erased one (nothing is sent to it but the receipt)."""
    if user_id is None:
        return None
    user = session.get(User, user_id)
    if user is None or user.deleted_at is not None or user.email.endswith(ERASED_SUFFIX):
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
        user = _recipient(session, user_id)
        if user is None:
            return None
        to_address = user.email
    if user_id is not None and not _wants(session, user_id, category.value):
        return None
    tz = preferences(session, user_id=user_id).timezone if user_id else "UTC"
    content = build(tz)
    content.footer = content.footer or messages.footer(category.value)
    text, html = messages.render(content)
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
    return row


def _pending_group(session: Session, group_key: str) -> OutboxMessage | None:
    return session.scalar(
        select(OutboxMessage).where(
            OutboxMessage.group_key == group_key,
            OutboxMessage.state == OutboxState.PENDING.value,
            OutboxMessage.attempts == 0,
        )
    )


def _refold(
    session: Session, row: OutboxMessage, build: Callable[[str], Content], *, due: datetime, retain: datetime
) -> None:
    tz = preferences(session, user_id=row.user_id).timezone if row.user_id else "UTC"
    content = build(tz)
    content.footer = content.footer or messages.footer(row.category)
    row.subject = content.subject
    row.text_body, row.html_body = messages.render(content)
    row.next_attempt_at = due
    row.retain_until = max(row.retain_until, retain)
    session.flush()


# ---- what each event sends ------------------------------------------------------------------------------


def _pet_name(session: Session, pet_id: str | None) -> str:
    from petportrait.pets.models import Pet

    pet = session.get(Pet, pet_id) if pet_id else None
    return pet.name if pet is not None else "your pet"


def on_model_ready(session: Session, event: Event) -> None:
    from petportrait.portraits.models import PetModel

    model = session.get(PetModel, event.data["model_id"])
    pet_id = str(event.data.get("pet_id") or (model.pet_id if model else ""))
    name = _pet_name(session, pet_id)
    expires = model.expires_at if model is not None else None
    enqueue(
        session,
        user_id=event.owner_id,
        kind="model_ready",
        category=Category.JOB,
        data=dict(event.data),
        retain_until=expires,
        build=lambda tz: Content(
            subject=f"The model of {name} is ready",
            paragraphs=[
                f"The model trained on your photos of {name} is ready: you can now render portraits.",
                f"It is kept until {messages.local_date(expires, tz)}, then deleted; after that it can be "
                "trained again while the photos exist.",
            ],
            links=[Link("Render portraits", f"/pets/{pet_id}")],
        ),
    )


def on_model_failed(session: Session, event: Event) -> None:
    pet_id = str(event.data.get("pet_id") or "")
    name = _pet_name(session, pet_id)
    code = str(event.data.get("error_code") or "job_error")
    enqueue(
        session,
        user_id=event.owner_id,
        kind="model_failed",
        category=Category.JOB,
        data=dict(event.data),
        retain_until=utcnow() + timedelta(days=7),
        build=lambda tz: Content(
            subject=f"The model of {name} could not be trained",
            paragraphs=[
                f"Training the model of {name} failed ({code}). Nothing was kept half-way; "
                "you can try again.",
            ],
            links=[Link("See the pet", f"/pets/{pet_id}")],
        ),
    )


def _render_event(session: Session, event: Event, *, ready: bool) -> None:
    from petportrait.portraits.models import Render, RenderState

    model_id = str(event.data.get("model_id") or "")
    render_id = str(event.data["render_id"])
    render = session.get(Render, render_id)
    group_key = f"{'render_ready' if ready else 'render_failed'}:{model_id}"
    row = _pending_group(session, group_key)
    ids: list[str] = list(dict.fromkeys([*(row.data.get("render_ids", []) if row else []), render_id]))
    renders = [r for r in (session.get(Render, i) for i in ids) if r is not None]
    pet_id = render.pet_id if render is not None else (renders[0].pet_id if renders else None)
    name = _pet_name(session, pet_id)
    expires = [r.expires_at for r in renders if r.expires_at is not None]
    retain = max(expires) if expires else utcnow() + timedelta(days=7)
    # wait for the other portraits of the same job, so a job makes one message
    still_running = False
    if render is not None and render.job_id:
        still_running = bool(
            session.scalar(
                select(
                    exists().where(
                        Render.job_id == render.job_id,
                        Render.id.not_in(ids),
                        Render.state.in_([RenderState.QUEUED.value, RenderState.RENDERING.value]),
                    )
                )
            )
        )
    now = utcnow()
    due = now + RENDER_FOLD_FALLBACK if still_running else now
    code = str(event.data.get("error_code") or "job_error")

    def build(tz: str) -> Content:
        if ready:
            return Content(
                subject=f"{len(ids)} new portrait{'s' if len(ids) != 1 else ''} of {name}",
                paragraphs=[
                    f"{len(ids)} portrait{'s are' if len(ids) != 1 else ' is'} ready to view and download.",
                    f"Portraits are kept until {messages.local_date(min(expires) if expires else None, tz)}, "
                    "then deleted; download the ones you want to keep.",
                ],
                links=[Link("See and download your portraits", "/portraits")],
            )
        return Content(
            subject=f"Portraits of {name} could not be rendered",
            paragraphs=[
                f"{len(ids)} portrait(s) could not be rendered ({code}). You can ask for them again."
            ],
            links=[Link("Your portraits", "/portraits")],
        )

    data = {"model_id": model_id, "render_ids": ids}
    if row is not None:
        row.data = data
        _refold(session, row, build, due=due, retain=retain)
        return
    enqueue(
        session,
        user_id=event.owner_id,
        kind="render_ready" if ready else "render_failed",
        category=Category.JOB,
        data=data,
        retain_until=retain,
        group_key=group_key,
        due=due,
        build=build,
    )


def on_render_ready(session: Session, event: Event) -> None:
    _render_event(session, event, ready=True)


def on_render_failed(session: Session, event: Event) -> None:
    _render_event(session, event, ready=False)


def on_consent_requested(session: Session, event: Event) -> None:
    from petportrait.consent.models import MarketingRequest, MarketingRequestItem

    request = session.get(MarketingRequest, event.data["request_id"])
    if request is None:
        return
    count = len(
        list(
            session.scalars(
                select(MarketingRequestItem.id).where(MarketingRequestItem.request_id == request.id)
            )
        )
    )
    purpose, channels = request.purpose, ", ".join(request.channels)
    enqueue(
        session,
        user_id=request.owner_id,
        kind="consent_requested",
        category=Category.LEGAL,
        data=dict(event.data),
        build=lambda tz: Content(
            subject="We ask your permission to use your images in marketing",
            paragraphs=[
                f"We would like to use {count} of your item(s) in marketing. Purpose: {purpose}",
                f"Channels: {channels}. Nothing is used unless you say yes; you can withdraw at any time.",
            ],
            links=[Link("Answer the request", "/consent")],
        ),
    )


def _consent_receipt(session: Session, event: Event, *, granted: bool) -> None:
    from petportrait.consent.models import Consent

    consent = session.get(Consent, event.data["consent_id"])
    if consent is None:
        return
    at = consent.granted_at if granted else consent.withdrawn_at
    purpose, channels = consent.purpose, ", ".join(consent.channels)
    enqueue(
        session,
        user_id=consent.owner_id,
        kind="consent_granted" if granted else "consent_withdrawn",
        category=Category.LEGAL,
        data=dict(event.data),
        build=lambda tz: Content(
            subject="Receipt: your marketing consent" + ("" if granted else " is withdrawn"),
            paragraphs=[
                (
                    f"On {messages.local_date(at, tz)} you agreed that one {consent.item_kind} may be used "
                    f"in marketing. Purpose: {purpose}. Channels: {channels}."
                    if granted
                    else f"On {messages.local_date(at, tz)} you withdrew your consent; the marketing copy is "
                    "deleted and leaves the marketing library."
                ),
                f"Consent id: {consent.id}. You can withdraw it at any time.",
            ],
            links=[Link("Your receipt", f"/consent/consents/{consent.id}/receipt")],
        ),
    )


def on_consent_granted(session: Session, event: Event) -> None:
    _consent_receipt(session, event, granted=True)


def on_consent_withdrawn(session: Session, event: Event) -> None:
    _consent_receipt(session, event, granted=False)


def _notice_content(notice: Any, tz: str, *, decided: str | None, deadline: datetime | None) -> Content:
    st: dict[str, Any] = notice.statement or {}
    policy = st.get("policy") or {}
    paragraphs = [
        f"Statement of reasons (case {st.get('case_id', notice.case_id)}):",
        f"What we found: {st.get('facts') or '-'}",
        f"The rule: {policy.get('title', '')} ({policy.get('clause', '')}, "
        f"policy {policy.get('version', '')}): "
        f"{policy.get('text', '')}",
        f"What happens: {st.get('consequence', '')}",
    ]
    if deadline is not None:
        paragraphs.append(f"Deadline to fix it: {messages.local_date(deadline, tz)}.")
    paragraphs.append(f"How to fix it: {st.get('how_to_fix', '')}")
    if st.get("reasons"):
        paragraphs.append(f"Reasons for the decision: {st['reasons']}")
    paragraphs.append(
        "How to appeal: open the notice and appeal, saying why; someone in trust & safety decides again."
    )
    subject = (
        "Written notice: a portrait breaks the content policy"
        if decided is None
        else f"Decision on your content-policy case: {decided.replace('_', ' ')}"
    )
    return Content(
        subject=subject, paragraphs=paragraphs, links=[Link("Read the notice and appeal", "/notices")]
    )


def on_notice_sent(session: Session, event: Event) -> None:
    from petportrait.rights.models import Notice

    notice = session.get(Notice, event.data["notice_id"])
    if notice is None:
        return
    raw = event.data.get("cure_deadline")
    deadline = datetime.fromisoformat(raw) if isinstance(raw, str) else raw
    enqueue(
        session,
        user_id=notice.owner_id,
        kind="notice_sent",
        category=Category.LEGAL,
        data={k: str(v) for k, v in event.data.items()},
        build=lambda tz: _notice_content(notice, tz, decided=None, deadline=deadline),
    )


def on_notice_decided(session: Session, event: Event) -> None:
    from petportrait.rights.models import Notice

    notice_id = event.data.get("notice_id")
    notice = (
        session.get(Notice, notice_id)
        if notice_id
        else session.scalar(
            select(Notice)
            .where(Notice.case_id == event.data["case_id"])
            .order_by(Notice.sent_at.desc())
            .limit(1)
        )
    )
    if notice is None:
        return
    decision = str(event.data.get("decision") or notice.kind)
    enqueue(
        session,
        user_id=notice.owner_id,
        kind="notice_decided",
        category=Category.LEGAL,
        data={k: str(v) for k, v in event.data.items()},
        build=lambda tz: _notice_content(notice, tz, decided=decision, deadline=None),
    )


def on_account_erased(session: Session, event: Event) -> None:
    """The erasure receipt, to the address the account had; every other message still waiting is dropped."""
    user_id = event.owner_id
    address = str(event.data["email"])
    if user_id is not None:
        session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.user_id == user_id,
                OutboxMessage.state.in_([OutboxState.PENDING.value, OutboxState.SENDING.value]),
            )
            .values(state=OutboxState.CANCELLED.value, text_body="", html_body="", to_address="")
            .execution_options(synchronize_session=False)
        )
    now = utcnow()
    enqueue(
        session,
        user_id=user_id,
        to_address=address,
        kind="account_erased",
        category=Category.LEGAL,
        data={},
        retain_until=now + timedelta(days=7),
        build=lambda tz: Content(
            subject="Your petportrait account is deleted",
            paragraphs=[
                f"Your account was deleted on {messages.local_date(now, tz)}. "
                "Your sign-in tokens are revoked, "
                "your jobs stopped, and your photos, models and portraits are deleted within minutes "
                "(except anything under a legal hold, which is deleted when the hold ends).",
                "This is the last message we send to this address.",
            ],
        ),
    )


def on_password_changed(session: Session, event: Event) -> None:
    now = utcnow()
    enqueue(
        session,
        user_id=event.owner_id,
        kind="password_changed",
        category=Category.SECURITY,
        build=lambda tz: Content(
            subject="Your petportrait password was changed",
            paragraphs=[
                f"Your password was changed on {messages.local_date(now, tz)}.",
                "If this was not you, reset your password and revoke your tokens at once.",
            ],
            links=[Link("Your account", "/me")],
        ),
    )


def on_token_created(session: Session, event: Event) -> None:
    token = session.get(ApiToken, event.data["token_id"])
    if token is None:
        return
    what = "an API token" if token.kind == "api" else "a browser sign-in"
    label = f" named {token.name!r}" if token.name else ""
    enqueue(
        session,
        user_id=token.user_id,
        kind="token_created",
        category=Category.SECURITY,
        data={"token_id": token.id},
        retain_until=utcnow() + timedelta(days=30),
        build=lambda tz: Content(
            subject="A new sign-in to your petportrait account",
            paragraphs=[
                f"On {messages.local_date(token.created_at, tz)} someone signed in with your password "
                "and got "
                f"{what}{label}.",
                "If this was not you, change your password and revoke the token.",
            ],
            links=[Link("Your tokens", "/me")],
        ),
    )


def on_webhook_disabled(session: Session, event: Event) -> None:
    url = str(event.data.get("url", ""))
    enqueue(
        session,
        user_id=event.owner_id,
        kind="webhook_disabled",
        category=Category.SECURITY,
        data={"endpoint_id": event.data.get("endpoint_id")},
        build=lambda tz: Content(
            subject="A webhook endpoint was disabled",
            paragraphs=[
                f"Deliveries to {url} failed for {event.data.get('days', 5)} days, so the endpoint is "
                "disabled and receives no more events.",
                "Fix the receiver, then add the endpoint again.",
            ],
            links=[Link("Your webhooks", "/settings")],
        ),
    )


SUBSCRIBERS: dict[str, Callable[[Session, Event], None]] = {
    "model.ready": on_model_ready,
    "model.failed": on_model_failed,
    "render.ready": on_render_ready,
    "render.failed": on_render_failed,
    "consent.requested": on_consent_requested,
    "consent.granted": on_consent_granted,
    "consent.withdrawn": on_consent_withdrawn,
    "notice.sent": on_notice_sent,
    "notice.decided": on_notice_decided,
    "account.erased": on_account_erased,
    "password.changed": on_password_changed,
    "token.created": on_token_created,
    "webhook.disabled": on_webhook_disabled,
}


# ---- reminders ------------------------------------------------------------------------------------------


@dataclass
class ReminderReport:
    portraits: int = 0
    photos: int = 0
    messages: int = 0


def send_reminders(session: Session, *, now: datetime | None = None, limit: int = 2000) -> ReminderReport:
    """Write the 3-day reminders of portraits and photos not yet reminded (one message per person, per
    kind); every item found is marked reminded, whether or not its owner wants reminders."""
    from petportrait.pets.models import Pet, Photo
    from petportrait.portraits.models import Render, RenderState

    now = now or utcnow()
    horizon = now + REMINDER_AHEAD
    report = ReminderReport()

    def not_reminded(kind: str, column: Any) -> Any:
        return ~exists().where(ReminderSent.item_kind == kind, ReminderSent.item_id == column)

    renders = list(
        session.scalars(
            select(Render)
            .where(
                Render.state == RenderState.READY.value,
                Render.expires_at.is_not(None),
                Render.expires_at > now,
                Render.expires_at <= horizon,
                not_reminded("render", Render.id),
            )
            .order_by(Render.owner_id, Render.expires_at)
            .limit(limit)
        )
    )
    photos = list(
        session.scalars(
            select(Photo)
            .where(Photo.expires_at > now, Photo.expires_at <= horizon, not_reminded("photo", Photo.id))
            .order_by(Photo.owner_id, Photo.expires_at)
            .limit(limit)
        )
    )
    by_owner: dict[str, list[Any]] = {}
    for render in renders:
        by_owner.setdefault(render.owner_id, []).append(render)
        session.add(
            ReminderSent(
                item_kind="render",
                item_id=render.id,
                owner_id=render.owner_id,
                item_expires_at=render.expires_at,
                at=now,
            )
        )
    report.portraits = len(renders)
    pets: dict[str, str] = {}

    def pet_name(pet_id: str) -> str:
        if pet_id not in pets:
            pet = session.get(Pet, pet_id)
            pets[pet_id] = pet.name if pet is not None else "your pet"
        return pets[pet_id]

    for owner_id, items in by_owner.items():
        first = min(r.expires_at for r in items)
        last = max(r.expires_at for r in items)
        lines = [(pet_name(r.pet_id), (r.style or "custom").replace("_", " "), r.expires_at) for r in items]
        row = enqueue(
            session,
            user_id=owner_id,
            kind="reminder_portraits",
            category=Category.REMINDER,
            data={"render_ids": [r.id for r in items]},
            retain_until=last,
            build=_portraits_reminder(lines, first),
        )
        report.messages += row is not None
    photo_groups: dict[tuple[str, str], list[Any]] = {}
    for photo in photos:
        photo_groups.setdefault((photo.owner_id, photo.pet_id), []).append(photo)
        session.add(
            ReminderSent(
                item_kind="photo",
                item_id=photo.id,
                owner_id=photo.owner_id,
                item_expires_at=photo.expires_at,
                at=now,
            )
        )
    report.photos = len(photos)
    for (owner_id, pet_id), items in photo_groups.items():
        first = min(p.expires_at for p in items)
        last = max(p.expires_at for p in items)
        name = pet_name(pet_id)
        row = enqueue(
            session,
            user_id=owner_id,
            kind="reminder_photos",
            category=Category.REMINDER,
            data={"pet_id": pet_id, "photo_ids": [p.id for p in items]},
            retain_until=last,
            build=_photos_reminder(name, len(items), first, pet_id),
        )
        report.messages += row is not None
    session.flush()
    return report


def _portraits_reminder(lines: list[tuple[str, str, datetime]], first: datetime) -> Callable[[str], Content]:
    def build(tz: str) -> Content:
        return Content(
            subject=f"{len(lines)} portrait(s) will be deleted in 3 days",
            paragraphs=[
                "These portraits are deleted soon, as the data policy says; download the ones you want "
                f"to keep. The first goes on {messages.local_date(first, tz)}.",
            ],
            items=[f"{n}, {s}: deleted on {messages.local_date(at, tz)}" for n, s, at in lines],
            links=[Link("Download your portraits", "/portraits")],
        )

    return build


def _photos_reminder(name: str, count: int, first: datetime, pet_id: str) -> Callable[[str], Content]:
    def build(tz: str) -> Content:
        return Content(
            subject=f"The photos of {name} will be deleted in 3 days",
            paragraphs=[
                f"{count} photo(s) of {name} are deleted from {messages.local_date(first, tz)}, as the "
                "data policy says. Until then you can train the model again; after that a new model "
                "needs new photos.",
            ],
            links=[Link(f"{name}'s page", f"/pets/{pet_id}")],
        )

    return build


# ---- delivery -------------------------------------------------------------------------------------------


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


def _claim(session: Session, row_id: str, *, worker_id: str, now: datetime, ttl: timedelta) -> bool:
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
                if not _claim(session, row_id, worker_id=worker_id, now=now, ttl=ttl):
                    continue
                row = session.get(OutboxMessage, row_id, populate_existing=True)
                if row is None:
                    continue
                message = mail.build(
                    message_id=row.message_id,
                    sender=cfg.from_address,
                    to=row.to_address,
                    subject=row.subject,
                    text=row.text_body.replace(messages.BASE_URL_MARK, base),
                    html=row.html_body.replace(messages.BASE_URL_MARK, base),
                    date=row.created_at,
                )
                try:
                    path = transport.send(message, outbox_id=row.id)
                except Exception as exc:
                    _failed(
                        session,
                        row,
                        worker_id=worker_id,
                        error=f"{type(exc).__name__}: {exc}",
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
                    values.update(to_address="", text_body="", html_body="")
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


# ---- retention ------------------------------------------------------------------------------------------


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
    root = outbox_dir.resolve()
    for row_id, path in rows:
        candidate = Path(path) if path else root / f"{row_id}.eml"
        if candidate.resolve().parent == root:
            candidate.unlink(missing_ok=True)
    ids = [r[0] for r in rows]
    for start in range(0, len(ids), 500):
        session.execute(
            delete(OutboxMessage)
            .where(OutboxMessage.id.in_(ids[start : start + 500]))
            .execution_options(synchronize_session=False)
        )
    session.execute(
        delete(ReminderSent)
        .where(ReminderSent.item_expires_at < now - timedelta(days=1))
        .execution_options(synchronize_session=False)
    )
    session.flush()
    return len(ids)


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


def outbox_counts(session: Session) -> dict[str, int]:
    """How many outbox messages are in each state (for the metrics; `failed` means retries ran out)."""
    rows = session.execute(select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state)).all()
    counts = {state.value: 0 for state in OutboxState}
    counts.update({state: int(count) for state, count in rows})
    return counts
