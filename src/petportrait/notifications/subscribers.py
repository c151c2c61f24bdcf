"""What each domain event sends: the subscribers that write a message to the outbox."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from petportrait.accounts.models import ApiToken
from petportrait.clock import utcnow
from petportrait.notifications import messages
from petportrait.notifications.messages import Content, Link
from petportrait.notifications.models import Category, OutboxMessage
from petportrait.notifications.outbox import (
    RESET_KIND,
    SIGNUP_ATTEMPT_KIND,
    VERIFY_KIND,
    enqueue,
    erase_messages,
    pending_group,
    refold,
)
from petportrait.registry import Event

RENDER_FOLD_FALLBACK = timedelta(minutes=10)


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
    row = pending_group(session, group_key)
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

    data = {"model_id": model_id, "pet_id": pet_id, "render_ids": ids}
    if row is not None:
        row.data = data
        refold(session, row, build, due=due, retain=retain)
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
                "The receipt carries a proof from our public transparency log that anyone can check without "
                "trusting us: petportrait verify-receipt, with the log's key from "
                "/.well-known/petportrait-log.",
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
    """The erasure receipt, to the address the account had; every other message of the account, sent or
    not, is deleted with its .eml file."""
    user_id = event.owner_id
    address = str(event.data["email"])
    if user_id is not None:
        erase_messages(session, user_id)
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


def _when(value: Any) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _link_message(
    session: Session,
    event: Event,
    *,
    kind: str,
    subject: str,
    what: str,
    path: str,
    label: str,
    otherwise: str,
) -> None:
    """A message carrying a single-use link (the event's token, valid until its expires_at)."""
    token, expires = str(event.data["token"]), _when(event.data["expires_at"])
    enqueue(
        session,
        user_id=event.owner_id,
        kind=kind,
        category=Category.SECURITY,
        retain_until=expires,
        build=lambda tz: Content(
            subject=subject,
            paragraphs=[
                f"{what} (the link works once, until {messages.local_date(expires, tz)}).",
                otherwise,
            ],
            links=[Link(label, f"{path}?token={token}")],
        ),
    )


def on_verify_requested(session: Session, event: Event) -> None:
    """The verification link of a sign-up (the only message an unverified account gets)."""
    _link_message(
        session,
        event,
        kind=VERIFY_KIND,
        subject="Confirm your email address for petportrait",
        what="Someone created a petportrait account with this address. If it was you, confirm the address "
        "with the link below",
        path="/verify",
        label="Confirm my address",
        otherwise="If it was not you, do nothing: the account gets no other email.",
    )


def on_reset_requested(session: Session, event: Event) -> None:
    _link_message(
        session,
        event,
        kind=RESET_KIND,
        subject="Choose a new petportrait password",
        what="Someone asked to reset the password of your petportrait account. If it was you, choose a new "
        "password with the link below; every session and token of the account is then signed out",
        path="/password-reset/confirm",
        label="Choose a new password",
        otherwise="If it was not you, do nothing: your password stays as it is.",
    )


def on_signup_attempted(session: Session, event: Event) -> None:
    """The notice promised to an address that has an account: someone tried to sign up with it (once a
    day at most)."""
    now = utcnow()
    recent = session.scalar(
        select(OutboxMessage.id).where(
            OutboxMessage.user_id == event.owner_id,
            OutboxMessage.kind == SIGNUP_ATTEMPT_KIND,
            OutboxMessage.created_at > now - timedelta(days=1),
        )
    )
    if recent is not None:
        return
    enqueue(
        session,
        user_id=event.owner_id,
        kind=SIGNUP_ATTEMPT_KIND,
        category=Category.SECURITY,
        retain_until=now + timedelta(days=7),
        build=lambda tz: Content(
            subject="Someone tried to sign up with your address",
            paragraphs=[
                f"On {messages.local_date(now, tz)} someone tried to create a petportrait account with this "
                "address, which has one already. Nothing changed.",
                "If it was you, sign in, or reset your password if you forgot it.",
            ],
            links=[Link("Reset your password", "/password-reset")],
        ),
    )


def on_hold_notice(session: Session, event: Event) -> None:
    """A legal hold keeps the person's data (sent only where the settings say the law allows telling)."""
    until = _when(event.data["ends_at"])
    enqueue(
        session,
        user_id=event.owner_id,
        kind="hold_notice",
        category=Category.LEGAL,
        data={"hold_id": event.data.get("hold_id")},
        retain_until=until,
        build=lambda tz: Content(
            subject="Some of your data is kept under a legal hold",
            paragraphs=[
                "A legal obligation requires us to keep some of your data beyond its usual period. It is "
                f"kept, and used for nothing else, until {messages.local_date(until, tz)} at the latest, "
                "then deleted as the data policy says.",
            ],
            links=[Link("Your data", "/me")],
        ),
    )


SUBSCRIBERS: dict[str, Callable[[Session, Event], None]] = {
    "hold.notice": on_hold_notice,
    "account.verify_requested": on_verify_requested,
    "account.reset_requested": on_reset_requested,
    "account.signup_attempted": on_signup_attempted,
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
