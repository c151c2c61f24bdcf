"""The 3-day reminders of portraits and photos about to be deleted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from petportrait.clock import utcnow
from petportrait.notifications import messages
from petportrait.notifications.messages import Content, Link
from petportrait.notifications.models import Category, ReminderSent
from petportrait.notifications.outbox import enqueue

REMINDER_AHEAD = timedelta(days=3)


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
