"""Deleting items now: blob first, then a tombstone (the deletion receipt) and an audit entry.

Everything happens in the caller's transaction; a legal hold refuses with 409 `legal_hold`. The sweeper
writes the same tombstones and audit entries in bulk (`tombstone_values`, `deletion_event`). Neither keeps
the item's sha256: both keep its fingerprint under the account's key (`retention.fingerprints`), and the
free text the audit log holds about the item (`audit.text_ref`) is deleted with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from petportrait.clock import utcnow
from petportrait.errors import InvalidInput, NotFound
from petportrait.paging import PageParams, page_query
from petportrait.registry import emit, registry_of
from petportrait.retention import audit, blobops, fingerprints, holds, policy
from petportrait.retention.keys import destroy_keys
from petportrait.retention.models import DeletionReason, Tombstone
from petportrait.storage.base import BlobStore


def tombstone_values(
    kind: str,
    *,
    item_id: str,
    owner_id: str,
    created_at: datetime | None,
    expires_at: datetime | None,
    storage_key: str | None,
    fingerprint: str | None,
    size: int | None,
    reason: str,
    actor_id: str | None,
    purged_at: datetime,
    pet_id: str | None = None,
) -> dict[str, Any]:
    """The column values of an item's tombstone."""
    return {
        "id": item_id,
        "kind": kind,
        "owner_id": owner_id,
        "pet_id": pet_id,
        "created_at": created_at,
        "expires_at": expires_at,
        "storage_key": storage_key,
        "fingerprint": fingerprint,
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
        details={"storage_key": stone["storage_key"], "fingerprint": stone["fingerprint"], "by": by},
    )


def item_model(session: Session, kind: str) -> Any:
    """The table of a kind of item (422 `unknown_kind` for a kind nobody registered)."""
    models = registry_of(session).item_models
    model = models.get(kind)
    if model is None:
        raise InvalidInput(f"Unknown kind {kind!r}; one of: {', '.join(models)}.", code="unknown_kind")
    return model


def stone_of(
    row: Any, kind: str, *, fingerprint: str | None, reason: str, actor_id: str | None, now: datetime
) -> dict[str, Any]:
    """The tombstone values of a row about to be deleted."""
    return tombstone_values(
        kind,
        item_id=row.id,
        owner_id=row.owner_id,
        created_at=getattr(row, policy.KINDS[kind].clock, None),
        expires_at=row.expires_at,
        storage_key=row.storage_key,
        fingerprint=fingerprint,
        size=getattr(row, "size", None),
        reason=reason,
        actor_id=actor_id,
        purged_at=now,
        pet_id=getattr(row, "pet_id", None),
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
    model = item_model(session, kind)
    row = session.get(model, item_id)
    if row is None or row.owner_id != owner_id:
        stone = session.get(Tombstone, item_id)
        if stone is not None and stone.owner_id == owner_id and stone.kind == kind:
            return stone
        raise NotFound(f"No such {kind}.", code=f"{kind}_not_found")
    return delete_rows(session, blobs=blobs, rows=[(kind, row)], actor_id=actor_id, reason=reason)[0]


def delete_rows(
    session: Session,
    *,
    blobs: BlobStore,
    rows: Sequence[tuple[str, Any]],
    actor_id: str | None,
    reason: DeletionReason | str = DeletionReason.OWNER_DELETED,
) -> list[Tombstone]:
    """Delete these (kind, row) items now; nothing is deleted if a legal hold covers any of them."""
    for kind, row in rows:
        holds.ensure_not_held(session, kind=kind, item_id=row.id, owner_id=row.owner_id)
    now = utcnow()
    failures = blobops.delete_many(blobs, [row.storage_key for _, row in rows if row.storage_key])
    if failures:
        raise RuntimeError(f"could not delete {len(failures)} blob(s): {failures}")
    stones: list[Tombstone] = []
    events: list[audit.AuditEvent] = []
    prints = fingerprints.fingerprints(session, [(row.owner_id, row.sha256) for _, row in rows])
    for (kind, row), fingerprint in zip(rows, prints, strict=True):
        values = stone_of(row, kind, fingerprint=fingerprint, reason=str(reason), actor_id=actor_id, now=now)
        audit.delete_texts(session, subject_kind=kind, subject_ids=[row.id])
        session.delete(row)
        stone = Tombstone(**values)
        session.add(stone)
        stones.append(stone)
        events.append(deletion_event(values, by="request"))
        emit(session, "item.deleted", owner_id=row.owner_id, kind=kind, item_id=row.id, reason=str(reason))
    destroy_keys(session, [row.storage_key for _, row in rows])  # crypto-shredded when the tombstones commit
    session.flush()
    audit.record_many(session, events, at=now)
    return stones


def list_deletions(
    session: Session, *, owner_id: str, page: PageParams
) -> tuple[list[Tombstone], str | None]:
    """One page of the person's deletion receipts, newest first."""
    query = select(Tombstone).where(Tombstone.owner_id == owner_id)
    return page_query(session, query, stamp=Tombstone.purged_at, ident=Tombstone.id, page=page)
