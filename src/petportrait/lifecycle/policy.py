"""The retention policy as code: every kind of stored thing, its clock and its period.

| kind      | blob prefix | clock                       | period          | S3 backstop        |
|-----------|-------------|-----------------------------|-----------------|--------------------|
| photo     | photos/     | uploaded_at                 | 30 days         | period + 1 day     |
| model     | models/     | trained_at                  | 7 days          | period + 1 day     |
| render    | renders/    | rendered_at                 | 30 days         | period + 1 day     |
| derived   | derived/    | the end of its job          | none (job end)  | 2 days             |
| marketing | marketing/  | while the consent stands    | none (consent)  | none               |

Settings may shorten a period, never lengthen it (settings.py refuses a longer one at start-up, and
`period` refuses again here). An item is expired from the moment `now >= expires_at`, or
`now >= clock + period` when a shortened setting makes that earlier: the earlier of the two wins.
From that moment it is hidden from every list, page and download (use `live_clause` in queries,
`ensure_live` on direct links), before any sweep removes it.

Derived training data (crops, cached latents, text embeddings, class images, worker scratch) is written
under `derived/{owner_id}/{job_id}/` (see `derived_prefix`) or in `lifecycle.scratch.job_scratch`, and
is deleted when the job ends; the sweeper removes what a crashed worker left behind.
Marketing copies live while their consent stands; the consent domain registers its table with
`register_item` and withdraws copies with `service.delete_now`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_

from petportrait.clock import utcnow
from petportrait.errors import Gone
from petportrait.pets.models import Photo
from petportrait.portraits.models import PetModel, Render
from petportrait.settings import (
    POLICY_MODEL_DAYS,
    POLICY_PHOTO_DAYS,
    POLICY_RENDER_DAYS,
    RetentionSettings,
    Settings,
)


@dataclass(frozen=True)
class Kind:
    """One kind of stored thing and the rule that keeps it."""

    name: str
    prefix: str
    clock: str
    policy_days: float | None
    setting: str | None
    description: str
    backstop_days: int | None = None  # for kinds without a period: the S3 rule's age in days


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
        ),
        Kind(
            "model",
            "models/",
            "trained_at",
            POLICY_MODEL_DAYS,
            "model_days",
            "trained model weights (LoRA) and checkpoints",
        ),
        Kind(
            "render",
            "renders/",
            "rendered_at",
            POLICY_RENDER_DAYS,
            "render_days",
            "a rendered portrait",
        ),
        Kind(
            "derived",
            "derived/",
            "job_end",
            None,
            None,
            "derived training data: crops, cached latents, text embeddings, class images, worker scratch",
            backstop_days=2,
        ),
        Kind(
            "marketing",
            "marketing/",
            "consent",
            None,
            None,
            "a copy in the marketing library, kept while the person's consent stands",
        ),
    )
}

# Kinds whose items are rows with a blob, an owner and an expiry; the sweeper, read-time hiding,
# erasure and export work on these. Order: what refers to others first.
ITEM_MODELS: dict[str, Any] = {"render": Render, "model": PetModel, "photo": Photo}
_MODEL_KIND: dict[type[Any], str] = {Render: "render", PetModel: "model", Photo: "photo"}


def register_item(kind: str, model: type[Any]) -> None:
    """Register the table of a listed kind (the consent domain registers marketing copies).

    The table needs id, owner_id, storage_key, sha256, expires_at and the kind's clock column.
    """
    spec = KINDS.get(kind)
    if spec is None:
        raise ValueError(f"kind {kind!r} is not in the retention policy; list it in lifecycle/policy.py")
    for column in ("id", "owner_id", "storage_key", "sha256", "expires_at"):
        if not hasattr(model, column):
            raise ValueError(f"{model.__name__} has no {column} column")
    if spec.policy_days is not None and not hasattr(model, spec.clock):
        raise ValueError(f"{model.__name__} has no {spec.clock} column")
    ITEM_MODELS[kind] = model
    _MODEL_KIND[model] = kind


def kind_of(item: Any) -> str:
    """The kind name of a row or of a table class."""
    cls = item if isinstance(item, type) else type(item)
    try:
        return _MODEL_KIND[cls]
    except KeyError:
        raise ValueError(f"{cls.__name__} is not a kind of stored item in the retention policy") from None


def kind_for_key(key: str) -> Kind | None:
    """The kind that a blob key's prefix names, or None."""
    for kind in KINDS.values():
        if key.startswith(kind.prefix):
            return kind
    return None


def period(kind: str, settings: Settings | RetentionSettings | None = None) -> timedelta | None:
    """The retention period of a kind: the policy's, or a shorter one from settings; None if event-bound."""
    spec = KINDS[kind]
    if spec.policy_days is None or spec.setting is None:
        return None
    days = spec.policy_days
    if settings is not None:
        retention = settings.retention if isinstance(settings, Settings) else settings
        configured = float(getattr(retention, spec.setting))
        if configured > spec.policy_days:
            raise ValueError(
                f"retention.{spec.setting}={configured} is longer than the policy's {spec.policy_days} days"
            )
        days = configured
    return timedelta(days=days)


def backstop_days(kind: str, settings: Settings | RetentionSettings | None = None) -> int | None:
    """Days after an object's creation at which the S3 backstop expires it: a day after the policy would."""
    spec = KINDS[kind]
    length = period(kind, settings)
    if length is None:
        return spec.backstop_days
    return math.ceil(length.total_seconds() / 86400) + 1


def _clock_column(model: Any) -> Any:
    return getattr(model, KINDS[kind_of(model)].clock)


def due_at(item: Any, settings: Settings | RetentionSettings | None = None) -> datetime | None:
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


def is_expired(
    item: Any, now: datetime | None = None, settings: Settings | RetentionSettings | None = None
) -> bool:
    """Whether the item has passed its retention period (it is then hidden everywhere)."""
    due = due_at(item, settings)
    return due is not None and (now or utcnow()) >= due


def expired_clause(
    model: Any, *, now: datetime | None = None, settings: Settings | RetentionSettings | None = None
) -> ColumnElement[bool]:
    """SQL: the rows of `model` that have expired at `now`."""
    now = now or utcnow()
    length = period(kind_of(model), settings)
    clauses = [model.expires_at <= now]
    if length is not None:
        clauses.append(and_(model.expires_at.is_not(None), _clock_column(model) <= now - length))
    return or_(*clauses)


def live_clause(
    model: Any, *, now: datetime | None = None, settings: Settings | RetentionSettings | None = None
) -> ColumnElement[bool]:
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


_GONE_DETAIL = {
    "photo": "This photo passed its {days}-day retention period and has been deleted.",
    "model": "This model passed its {days}-day retention period and has been deleted.",
    "render": "This portrait passed its {days}-day retention period and has been deleted.",
}


def ensure_live(
    item: Any, now: datetime | None = None, settings: Settings | RetentionSettings | None = None
) -> None:
    """Raise 410 Gone with code `<kind>_expired` if the item has expired (for direct links)."""
    if not is_expired(item, now, settings):
        return
    kind = kind_of(item)
    length = period(kind, settings)
    days = f"{length.total_seconds() / 86400:g}" if length else "retention"
    template = _GONE_DETAIL.get(
        kind, "This item passed its {days}-day retention period and has been deleted."
    )
    raise Gone(template.format(days=days), code=f"{kind}_expired")


def derived_prefix(*, owner_id: str, job_id: str) -> str:
    """The blob prefix under which a job's derived training data lives; removed when the job ends."""
    return f"derived/{owner_id}/{job_id}/"
