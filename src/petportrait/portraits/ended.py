"""Rows that end without an item: failed and cancelled models and renders, and finished jobs.

A failed or cancelled model keeps the ids of the photos it was to be trained on, a render its prompt, a
job its payload; none of them has a period of its own. `sweep_ended` (a periodic task) makes such model
and render rows due once they are older than the render period, so the sweeper deletes them with a
tombstone like any item, and deletes job rows that finished longer ago than that, even while the account
lives.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.orm import Session

from petportrait.clock import utcnow
from petportrait.db import session_scope
from petportrait.jobs.models import FINAL_STATES, Job
from petportrait.portraits.models import JobKind, ModelState, PetModel, Render, RenderState
from petportrait.registry import Services
from petportrait.retention import policy
from petportrait.settings import Settings

_ENDED_MODELS = (ModelState.FAILED.value, ModelState.CANCELLED.value)
_ENDED_RENDERS = (RenderState.FAILED.value, RenderState.CANCELLED.value)


def bound(settings: Settings) -> timedelta:
    """How long an ended row is kept: the render period (what a person may still want to look at)."""
    return policy.period("render", settings) or timedelta(days=30)


def sweep_ended_rows(session: Session, *, settings: Settings, now: datetime | None = None) -> dict[str, int]:
    """Make old failed/cancelled models and renders due now, and delete old finished jobs."""
    now = now or utcnow()
    cutoff = now - bound(settings)
    counts: dict[str, int] = {}
    for name, model, states in (("models", PetModel, _ENDED_MODELS), ("renders", Render, _ENDED_RENDERS)):
        result = session.execute(
            update(model)
            .where(
                model.state.in_(states),
                model.created_at <= cutoff,
                or_(model.expires_at.is_(None), model.expires_at > now),
            )
            .values(expires_at=now)
            .execution_options(synchronize_session=False)
        )
        counts[name] = int(result.rowcount or 0)  # type: ignore[attr-defined]
    jobs = session.execute(
        delete(Job)
        .where(
            Job.kind.in_([kind.value for kind in JobKind]),
            Job.state.in_(FINAL_STATES),
            Job.finished_at <= cutoff,
        )
        .execution_options(synchronize_session=False)
    )
    counts["jobs"] = int(jobs.rowcount or 0)  # type: ignore[attr-defined]
    return counts


def sweep_ended(services: Services) -> dict[str, int]:
    """The periodic task."""
    with session_scope(services.session_factory) as session:
        return sweep_ended_rows(session, settings=services.settings)
