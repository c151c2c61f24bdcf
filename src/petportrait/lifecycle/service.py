"""A person's rights over their data: delete any item now, delete the account, see deletion receipts.

Deleting an item removes its blob first, then turns its row into a tombstone (the deletion receipt) and
audits it, all in the caller's transaction; a legal hold refuses with 409 `legal_hold`. Deleting an
account signs it out everywhere, cancels its jobs, scrubs its email and asks the sweeper to remove every
item it holds: the next sweep does, whatever the items' periods.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from petportrait.accounts import service as accounts_service
from petportrait.accounts.models import User
from petportrait.clock import utcnow
from petportrait.errors import Conflict, InvalidInput, NotFound
from petportrait.jobs import service as jobs_service
from petportrait.jobs.models import FINAL_STATES, Job
from petportrait.lifecycle import audit, blobops, holds, policy
from petportrait.lifecycle.models import DeletionReason, Tombstone
from petportrait.paging import PageParams, page_query
from petportrait.storage.base import BlobStore

log = logging.getLogger(__name__)

# Called as hook(session, user_id, actor_id) when an account is deleted, in its transaction; the consent
# domain registers one that withdraws the person's marketing copies.
ErasureHook = Callable[[Session, str, str | None], None]
_ERASURE_HOOKS: dict[str, ErasureHook] = {}


def register_erasure_hook(name: str, hook: ErasureHook) -> None:
    """Run `hook` whenever an account is deleted (registering the same name again replaces it)."""
    _ERASURE_HOOKS[name] = hook


def tombstone_values(
    kind: str,
    *,
    item_id: str,
    owner_id: str,
    created_at: datetime | None,
    expires_at: datetime | None,
    storage_key: str | None,
    sha256: str | None,
    size: int | None,
    reason: str,
    actor_id: str | None,
    purged_at: datetime,
) -> dict[str, Any]:
    """The column values of an item's tombstone."""
    return {
        "id": item_id,
        "kind": kind,
        "owner_id": owner_id,
        "created_at": created_at,
        "expires_at": expires_at,
        "storage_key": storage_key,
        "sha256": sha256,
        "size": size,
        "reason": reason,
        "actor_id": actor_id,
        "purged_at": purged_at,
    }


def deletion_event(stone: dict[str, Any], *, by: str) -> audit.AuditEvent:
    """The audit entry of one deletion."""
    return audit.AuditEvent(
        action="item.deleted",
        actor_id=stone["actor_id"],
        subject_kind=stone["kind"],
        subject_id=stone["id"],
        owner_id=stone["owner_id"],
        purpose=stone["reason"],
        details={"storage_key": stone["storage_key"], "sha256": stone["sha256"], "by": by},
    )


def _model(kind: str) -> Any:
    model = policy.ITEM_MODELS.get(kind)
    if model is None:
        raise InvalidInput(
            f"Unknown kind {kind!r}; one of: {', '.join(policy.ITEM_MODELS)}.", code="unknown_kind"
        )
    return model


def _stone_of(row: Any, kind: str, *, reason: str, actor_id: str | None, now: datetime) -> dict[str, Any]:
    return tombstone_values(
        kind,
        item_id=row.id,
        owner_id=row.owner_id,
        created_at=getattr(row, policy.KINDS[kind].clock, None),
        expires_at=row.expires_at,
        storage_key=row.storage_key,
        sha256=row.sha256,
        size=getattr(row, "size", None),
        reason=reason,
        actor_id=actor_id,
        purged_at=now,
    )


def delete_now(
    session: Session,
    *,
    blobs: BlobStore,
    kind: str,
    item_id: str,
    owner_id: str,
    actor_id: str | None,
    reason: DeletionReason | str = DeletionReason.OWNER_DELETED,
) -> Tombstone:
    """Delete one item now: blob first, then tombstone, receipt and audit entry; refuses under a legal hold.

    Deleting an item already deleted returns its tombstone. Another person's item is not found.
    """
    model = _model(kind)
    row = session.get(model, item_id)
    if row is None or row.owner_id != owner_id:
        stone = session.get(Tombstone, item_id)
        if stone is not None and stone.owner_id == owner_id and stone.kind == kind:
            return stone
        raise NotFound(f"No such {kind}.", code=f"{kind}_not_found")
    holds.ensure_not_held(session, kind=kind, item_id=row.id, owner_id=row.owner_id)
    now = utcnow()
    if row.storage_key:
        blobs.delete(row.storage_key)
    values = _stone_of(row, kind, reason=str(reason), actor_id=actor_id, now=now)
    stone = Tombstone(**values)
    session.delete(row)
    session.add(stone)
    session.flush()
    audit.record_many(session, [deletion_event(values, by="request")], at=now)
    return stone


def delete_pet_items(
    session: Session,
    *,
    blobs: BlobStore,
    owner_id: str,
    pet_id: str,
    actor_id: str | None,
    reason: DeletionReason | str = DeletionReason.OWNER_DELETED,
) -> list[Tombstone]:
    """Delete every photo, model and render of a pet now (nothing is deleted if any is held)."""
    now = utcnow()
    rows: list[tuple[str, Any]] = []
    for kind, model in policy.ITEM_MODELS.items():
        if hasattr(model, "pet_id"):
            query = select(model).where(model.pet_id == pet_id, model.owner_id == owner_id)
            rows.extend((kind, row) for row in session.scalars(query))
    for kind, row in rows:
        holds.ensure_not_held(session, kind=kind, item_id=row.id, owner_id=row.owner_id)
    _cancel_jobs(session, Job.target_id.in_([pet_id, *(row.id for _, row in rows)]), now=now)
    failures = blobops.delete_many(blobs, [row.storage_key for _, row in rows if row.storage_key])
    if failures:
        raise RuntimeError(f"could not delete {len(failures)} blob(s) of pet {pet_id}: {failures}")
    stones: list[Tombstone] = []
    events: list[audit.AuditEvent] = []
    for kind, row in rows:
        values = _stone_of(row, kind, reason=str(reason), actor_id=actor_id, now=now)
        session.delete(row)
        stone = Tombstone(**values)
        session.add(stone)
        stones.append(stone)
        events.append(deletion_event(values, by="request"))
    session.flush()
    audit.record_many(session, events, at=now)
    return stones


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
    user.deleted_at = now
    user.email = f"deleted-{user.id}@erased.invalid"
    user.display_name = None
    user.password_hash = "!erased"
    tokens = accounts_service.revoke_all_tokens(session, user_id=user.id)
    jobs = _cancel_jobs(session, Job.owner_id == user.id, now=now)
    for name, hook in _ERASURE_HOOKS.items():
        log.info("account %s erased: running hook %s", user.id, name)
        hook(session, user.id, actor_id)
    pending: dict[str, int] = {}
    held = 0
    for kind, model in policy.ITEM_MODELS.items():
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


def list_deletions(
    session: Session, *, owner_id: str, page: PageParams
) -> tuple[list[Tombstone], str | None]:
    """One page of the person's deletion receipts, newest first."""
    query = select(Tombstone).where(Tombstone.owner_id == owner_id)
    return page_query(session, query, stamp=Tombstone.purged_at, ident=Tombstone.id, page=page)
