"""The retention policy as code: every kind of stored item, its clock and its period.

| kind      | blob prefix | clock                       | period          | S3 backstop        |
|-----------|-------------|-----------------------------|-----------------|--------------------|
| photo     | photos/     | uploaded_at                 | 30 days         | period + 1 day     |
| model     | models/     | trained_at                  | 7 days          | period + 1 day     |
| render    | renders/    | rendered_at                 | 30 days         | period + 1 day     |
| marketing | marketing/  | while the consent stands    | none (consent)  | none               |

Settings may shorten a period, never lengthen it (settings.py refuses a longer one at start-up, and
`period` refuses again here). Every function takes the settings: a shortened period applies at read time
at once, before any sweep. An item is expired from the moment `now >= expires_at`, or
`now >= clock + period` when a shortened setting makes that earlier: the earlier of the two wins.
From that moment it is hidden from every list, page and download (use `live_clause` in queries,
`ensure_live` on direct links), before any sweep removes it.

Each kind's table is registered by its domain (`Registry.add_item_kind`) and names its kind in a class
attribute `retention_kind`; this module knows no domain. Derived training data never reaches storage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_

from petportrait.clock import utcnow
from petportrait.errors import Gone
from petportrait.registry import ItemKind
from petportrait.retention.models import DeletionReason
from petportrait.settings import (
    POLICY_MODEL_DAYS,
    POLICY_PHOTO_DAYS,
    POLICY_RENDER_DAYS,
    RetentionSettings,
    Settings,
)

SettingsLike = Settings | RetentionSettings


@dataclass(frozen=True)
class Kind:
    """One kind of stored item and the rule that keeps it."""

    name: str
    prefix: str
    clock: str
    policy_days: float | None
    setting: str | None
    description: str
    noun: str
    backstop_days: int | None = None  # for kinds without a period: the S3 rule's age in days

    @property
    def clock_column(self) -> str | None:
        """The column the period runs from, or None for a kind bound to an event (a consent)."""
        return self.clock if self.policy_days is not None else None

    def description_of_rule(self) -> str:
        """The rule in words, for `retention check` and the README."""
        if self.policy_days is None:
            return f"{self.description}; deleted when its {self.clock} ends"
        return (
            f"{self.description}; deleted {self.policy_days:g} days after {self.clock} (sooner by settings)"
        )


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "photo",
            "photos/",
            "uploaded_at",
            POLICY_PHOTO_DAYS,
            "photo_days",
            "a pet photo, sanitised; used only to train that person's own model",
            "photo",
        ),
        Kind(
            "model",
            "models/",
            "trained_at",
            POLICY_MODEL_DAYS,
            "model_days",
            "trained model weights (LoRA) and checkpoints",
            "model",
        ),
        Kind(
            "render",
            "renders/",
            "rendered_at",
            POLICY_RENDER_DAYS,
            "render_days",
            "a rendered portrait",
            "portrait",
        ),
        Kind(
            "marketing",
            "marketing/",
            "consent",
            None,
            None,
            "a copy in the marketing library, kept while the person's consent stands",
            "marketing copy",
        ),
    )
}

# The order in which the sweeper, erasure and checks visit the kinds: what refers to others first.
ITEM_ORDER = ("render", "model", "photo", "marketing")


def item_kinds() -> list[ItemKind]:
    """The kinds, in the order the sweeper visits them, as the registry checks the domains' tables."""
    return [
        ItemKind(name=name, clock_column=KINDS[name].clock_column, rule=KINDS[name].description_of_rule())
        for name in ITEM_ORDER
    ]


def kind_of(item: Any) -> str:
    """The kind name of a row or of a table class (its `retention_kind`)."""
    cls = item if isinstance(item, type) else type(item)
    kind = getattr(cls, "retention_kind", None)
    if kind not in KINDS:
        raise ValueError(f"{cls.__name__} is not a kind of stored item in the retention policy")
    return str(kind)


def kind_for_key(key: str) -> Kind | None:
    """The kind that a blob key's prefix names, or None."""
    for kind in KINDS.values():
        if key.startswith(kind.prefix):
            return kind
    return None


def period(kind: str, settings: SettingsLike) -> timedelta | None:
    """The retention period of a kind: the policy's, or a shorter one from settings; None if event-bound."""
    spec = KINDS[kind]
    if spec.policy_days is None or spec.setting is None:
        return None
    retention = settings.retention if isinstance(settings, Settings) else settings
    configured = float(getattr(retention, spec.setting))
    if configured > spec.policy_days:
        raise ValueError(
            f"retention.{spec.setting}={configured} is longer than the policy's {spec.policy_days} days"
        )
    return timedelta(days=configured)


def policy_period(kind: str) -> timedelta | None:
    """The policy's own period of a kind, before any setting shortens it; None if event-bound."""
    spec = KINDS[kind]
    return timedelta(days=spec.policy_days) if spec.policy_days is not None else None


def days(kind: str, settings: SettingsLike) -> str:
    """The period of a kind in words for people ("30 days", "7 days", "12 hours")."""
    length = period(kind, settings)
    if length is None:
        return "while it is needed"
    return describe(length)


def describe(length: timedelta) -> str:
    """A duration in words: whole days as days, else hours, else minutes."""
    total = length.total_seconds()
    count: float
    if total >= 86400:  # whole days stay whole: round(30.0, 1) is 30.0, written "30"
        count, unit = round(total / 86400, 1), "day"
    elif total >= 3600:
        count, unit = round(total / 3600, 1), "hour"
    else:
        count, unit = max(1, round(total / 60)), "minute"
    return f"{count:g} {unit}" + ("" if count == 1 else "s")


def backstop_days(kind: str, settings: SettingsLike) -> int | None:
    """Days after an object's creation at which the S3 backstop expires it: a day after the policy would."""
    spec = KINDS[kind]
    length = period(kind, settings)
    if length is None:
        return spec.backstop_days
    return math.ceil(length.total_seconds() / 86400) + 1


def _clock_column(model: Any) -> Any:
    return getattr(model, KINDS[kind_of(model)].clock)


def due_at(item: Any, settings: SettingsLike) -> datetime | None:
    """When an item expires: the earlier of expires_at and clock + period; None if it never started."""
    kind = kind_of(item)
    expires: datetime | None = item.expires_at
    if expires is None:
        return None  # not stored yet (a model still training): nothing to expire
    length = period(kind, settings)
    started: datetime | None = getattr(item, KINDS[kind].clock, None)
    if started is not None and length is not None:
        return min(expires, started + length)
    return expires


def is_expired(item: Any, now: datetime | None = None, *, settings: SettingsLike) -> bool:
    """Whether the item has passed its retention period (it is then hidden everywhere)."""
    due = due_at(item, settings)
    return due is not None and (now or utcnow()) >= due


def expired_clause(model: Any, *, now: datetime | None = None, settings: SettingsLike) -> ColumnElement[bool]:
    """SQL: the rows of `model` that have expired at `now`."""
    now = now or utcnow()
    length = period(kind_of(model), settings)
    clauses = [model.expires_at <= now]
    if length is not None:
        clauses.append(and_(model.expires_at.is_not(None), _clock_column(model) <= now - length))
    return or_(*clauses)


def live_clause(model: Any, *, now: datetime | None = None, settings: SettingsLike) -> ColumnElement[bool]:
    """SQL: the rows of `model` that have not expired at `now` (use it in every list and lookup).

    Rows not stored yet (expires_at NULL, e.g. a model still training) count as live.
    """
    now = now or utcnow()
    length = period(kind_of(model), settings)
    conditions = [model.expires_at > now]
    if length is not None:
        clock = _clock_column(model)
        conditions.append(or_(clock.is_(None), clock > now - length))
    return or_(model.expires_at.is_(None), and_(*conditions))


def ensure_live(item: Any, now: datetime | None = None, *, settings: SettingsLike) -> None:
    """Raise 410 Gone with code `<kind>_expired` if the item has expired (for direct links)."""
    if not is_expired(item, now, settings=settings):
        return
    kind = kind_of(item)
    spec = KINDS[kind]
    length = period(kind, settings)
    if length is None:
        detail = f"This {spec.noun} is no longer kept and has been deleted."
    else:
        detail = f"This {spec.noun} passed its retention period ({describe(length)}) and has been deleted."
    raise Gone(detail, code=f"{kind}_expired")


def expires_at(kind: str, at: datetime, *, settings: SettingsLike) -> datetime:
    """The one place an item's `expires_at` is stamped: its clock (`at`) plus its period as set now."""
    length = period(kind, settings)
    if length is None:
        raise ValueError(f"the kind {kind!r} has no period: it ends with an event, not a date")
    return at + length


def due_phases(
    model: Any, *, now: datetime, settings: SettingsLike, erased: Any
) -> list[tuple[str, ColumnElement[bool]]]:
    """The one "due for deletion" rule, as (reason, condition) pairs, each an index-friendly query of its own
    (the sweeper runs them one by one; `due_clause` joins them).

    Rows expire at `expires_at` (indexed). A row's expires_at was computed from settings that can never
    exceed the policy, so `clock + period` matters only when a setting has since shortened the period.
    Rows of erased accounts (`erased`: a SELECT of their ids, the registry's one rule) are due whatever
    their expiry.
    """
    kind = kind_of(model)
    expired, erased_reason = DeletionReason.EXPIRED.value, DeletionReason.ACCOUNT_DELETED.value
    phases: list[tuple[str, ColumnElement[bool]]] = [(expired, model.expires_at <= now)]
    length, full = period(kind, settings), policy_period(kind)
    if length is not None and full is not None and length < full:
        phases.append((expired, and_(model.expires_at.is_not(None), _clock_column(model) <= now - length)))
    phases.append((erased_reason, model.owner_id.in_(erased)))
    return phases


def due_clause(model: Any, *, now: datetime, settings: SettingsLike, erased: Any) -> ColumnElement[bool]:
    """SQL: the rows of `model` due for deletion at `now` (expired, or their account erased)."""
    return or_(*(condition for _, condition in due_phases(model, now=now, settings=settings, erased=erased)))
