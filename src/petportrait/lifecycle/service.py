"""Erasing an account: sign it out everywhere, cancel its jobs, scrub its email, run the domains' erasure
hooks (withdraw marketing copies, scrub generation records...) and leave every item it holds to the next
sweep, which removes them whatever their periods. Deleting one item now is `retention.tombstones`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from petportrait.accounts import service as accounts_service
from petportrait.clock import utcnow
from petportrait.jobs import service as jobs_service
from petportrait.jobs.models import FINAL_STATES, Job
from petportrait.registry import emit, registry_of
from petportrait.retention import audit, holds

log = logging.getLogger(__name__)


def _cancel_jobs(session: Session, where: Any, *, now: datetime) -> int:
    """Cancel unfinished jobs (queued ones at once, running ones asked to stop); returns how many."""
    _ = now
    pending = list(session.scalars(select(Job).where(where, Job.state.not_in(FINAL_STATES))))
    for job in pending:
        jobs_service.request_cancel(session, job=job)
    return len(pending)


@dataclass
class ErasureSummary:
    """What deleting an account did at once, and what the next sweep will remove."""

    user_id: str
    requested_at: datetime
    tokens_revoked: int
    jobs_cancelled: int
    items_pending: dict[str, int] = field(default_factory=dict)
    items_held: int = 0


def erase_account(session: Session, *, user_id: str, actor_id: str | None) -> ErasureSummary:
    """Delete an account: revoke its tokens, cancel its jobs, scrub its email, withdraw marketing copies,
    and leave every item it holds to the next sweep (which removes them whatever their periods)."""
    now = utcnow()
    address = accounts_service.scrub_for_erasure(session, user_id=user_id, now=now)
    emit(session, "account.erased", owner_id=user_id, email=address)
    tokens = accounts_service.revoke_all_tokens(session, user_id=user_id)
    jobs = _cancel_jobs(session, Job.owner_id == user_id, now=now)
    for name, hook in registry_of(session).erasure_hooks.items():
        log.info("account %s erased: running hook %s", user_id, name)
        hook(session, user_id, actor_id)
    pending: dict[str, int] = {}
    held = 0
    for kind, model in registry_of(session).item_models.items():
        pending[kind] = int(
            session.scalar(select(func.count()).select_from(model).where(model.owner_id == user_id)) or 0
        )
        held += int(
            session.scalar(
                select(func.count())
                .select_from(model)
                .where(
                    model.owner_id == user_id,
                    holds.held_clause(kind, model.id, model.owner_id, at=now),
                )
            )
            or 0
        )
    session.flush()
    audit.record(
        session,
        action="account.deleted",
        actor_id=actor_id,
        subject_kind="account",
        subject_id=user_id,
        owner_id=user_id,
        purpose="erasure",
        details={"tokens_revoked": tokens, "jobs_cancelled": jobs, "items_pending": pending, "held": held},
    )
    return ErasureSummary(
        user_id=user_id,
        requested_at=now,
        tokens_revoked=tokens,
        jobs_cancelled=jobs,
        items_pending=pending,
        items_held=held,
    )
