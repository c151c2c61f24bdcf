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
from petportrait.accounts.models import User
from petportrait.clock import utcnow
from petportrait.errors import Conflict, NotFound
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
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("No such account.", code="account_not_found")
    if user.deleted_at is not None:
        raise Conflict("This account has already been deleted.", code="account_deleted")
    now = utcnow()
    emit(session, "account.erased", owner_id=user.id, email=user.email)
    user.deleted_at = now
    user.email = f"deleted-{user.id}@erased.invalid"
    user.display_name = None
    user.password_hash = "!erased"
    tokens = accounts_service.revoke_all_tokens(session, user_id=user.id)
    jobs = _cancel_jobs(session, Job.owner_id == user.id, now=now)
    for name, hook in registry_of(session).erasure_hooks.items():
        log.info("account %s erased: running hook %s", user.id, name)
        hook(session, user.id, actor_id)
    pending: dict[str, int] = {}
    held = 0
    for kind, model in registry_of(session).item_models.items():
        pending[kind] = int(
            session.scalar(select(func.count()).select_from(model).where(model.owner_id == user.id)) or 0
        )
        held += int(
            session.scalar(
                select(func.count())
                .select_from(model)
                .where(
                    model.owner_id == user.id,
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
        subject_id=user.id,
        owner_id=user.id,
        purpose="erasure",
        details={"tokens_revoked": tokens, "jobs_cancelled": jobs, "items_pending": pending, "held": held},
    )
    return ErasureSummary(
        user_id=user.id,
        requested_at=now,
        tokens_revoked=tokens,
        jobs_cancelled=jobs,
        items_pending=pending,
        items_held=held,
    )
