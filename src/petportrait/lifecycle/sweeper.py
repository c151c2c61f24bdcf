"""The sweeper: deletes what has expired, in batches, under a lease; safe to kill at any point.

One `sweep_once` is the locked unit (schedule it every `interval(settings)` seconds; default one
minute). It takes the `lifecycle.sweeper` lease, so two processes never sweep at the same time, and:

1. for each kind (renders, models, photos), in batches: selects rows that are due (expired, or of a
   deleted account) and not under a legal hold; deletes their blobs; then, in one transaction, turns
   the rows into tombstones and audits each deletion. Killed after the blobs and before the commit,
   the rows are still due, their blobs are already gone, and the next run finishes them;
2. removes what is left of deleted accounts once their items are gone (pets, tokens, ended jobs);
3. every `reconcile_interval` seconds, reconciles storage with the database: a blob under an item
   prefix that no row owns is deleted once older than the grace period (so an upload in flight, whose
   row is not committed yet, is never touched); a blob whose key a tombstone names is deleted at once.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import and_, delete, null, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from petportrait.clock import utcnow
from petportrait.db import insert_rows, session_scope
from petportrait.jobs import leases
from petportrait.jobs.models import FINAL_STATES, Job, Lease
from petportrait.lifecycle import vacuum
from petportrait.pets import service as pets_service
from petportrait.registry import emit_many, registry_from
from petportrait.retention import audit, blobops, fingerprints, holds, policy
from petportrait.retention.keys import destroy_keys
from petportrait.retention.models import HoldScope, LegalHold, SweepRun, Tombstone
from petportrait.retention.tombstones import deletion_event, tombstone_values
from petportrait.settings import Settings
from petportrait.storage.base import BlobStore

log = logging.getLogger(__name__)

SWEEP_LEASE = "lifecycle.sweeper"
RECONCILE_MARK = "lifecycle.reconcile"
DEFAULT_RECONCILE_SECONDS = 900.0
HOLDER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
_IN_CHUNK = 500
_WINDOW_BATCHES = 10  # due rows are read this many batches at a time
_SQLITE_CACHE_KIB = 32 * 1024
_TOMBSTONES = Tombstone.metadata.tables["tombstones"]  # Core inserts: the fast path for batches

# A fault hook for tests: called with a stage name ("after_blobs", "before_commit"); raising stops the
# sweep there, as a kill would.
Fault = Callable[[str], None]


@dataclass
class SweepReport:
    """What one sweep did."""

    holder: str
    started_at: datetime
    ran: bool = True
    duration_seconds: float = 0.0
    purged: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    orphans_removed: int = 0
    tombstone_blobs_removed: int = 0
    accounts_cleared: int = 0
    scratch_removed: int = 0
    reconciled: bool = False
    errors: list[str] = field(default_factory=list)
    # PostgreSQL: whether data_keys was vacuumed after keys were destroyed, or why it could not be
    data_keys_vacuumed: bool = False
    vacuum_skipped: str | None = None

    @property
    def total_purged(self) -> int:
        return sum(self.purged.values())


def interval(settings: Settings) -> float:
    """How often to run `sweep_once`, in seconds (settings.retention.sweep_interval_seconds)."""
    return float(settings.retention.sweep_interval_seconds)


# -- the lease ---------------------------------------------------------------------------------------


# -- the sweep ---------------------------------------------------------------------------------------


def sweep_once(
    session_factory: sessionmaker[Session],
    blobs: BlobStore,
    *,
    now: datetime | None = None,
    batch_size: int = 5000,
    settings: Settings,
    holder: str = HOLDER,
    reconcile: bool | None = None,
    reconcile_interval: float = DEFAULT_RECONCILE_SECONDS,
    fault: Fault | None = None,
) -> SweepReport:
    """Sweep everything that is due at `now` (default: the clock), under the sweeper lease.

    Returns a report with ran=False if another process holds the lease. `reconcile` forces (True) or
    skips (False) the storage reconciliation; by default it runs every `reconcile_interval` seconds.
    """
    now = now or utcnow()
    report = SweepReport(holder=holder, started_at=now)
    lease = _HeldLease(session_factory, holder=holder, now=now, ttl=lease_ttl(settings))
    if not lease.take():
        report.ran = False
        return report
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="sweeper-record") as pool:
            recorder = _Recorder(pool, report)
            try:
                for kind, model in registry_from(session_factory).item_models.items():
                    _sweep_kind(
                        session_factory,
                        blobs,
                        kind,
                        model,
                        now=now,
                        settings=settings,
                        batch_size=batch_size,
                        report=report,
                        fault=fault,
                        lease=lease,
                        recorder=recorder,
                    )
            finally:
                recorder.settle()
        _checkpoint(session_factory)
        _clear_erased_accounts(session_factory, report=report)
        report.scratch_removed = remove_scratch(settings)
        grace = timedelta(seconds=settings.retention.orphan_grace_seconds)
        if reconcile is None:
            reconcile = _reconcile_due(session_factory, now=now, every=timedelta(seconds=reconcile_interval))
        if reconcile:
            _reconcile(session_factory, blobs, now=now, grace=grace, report=report, fault=fault, lease=lease)
            _mark_reconciled(session_factory, holder=holder, now=now)
            report.reconciled = True
        report.duration_seconds = lease.elapsed()
        _record_run(session_factory, report, now=now)
        _checkpoint(session_factory)
        _vacuum_data_keys(session_factory, report)
    except LeaseLost as exc:
        report.errors.append(str(exc))
        report.duration_seconds = lease.elapsed()
        _observe(report)
        return report
    except Exception:
        lease.release()  # an error, not a kill: let the next run start at once
        raise
    lease.release()
    _observe(report)
    return report


class LeaseLost(Exception):
    """The sweep ran past its lease and another process took it; this sweep stops."""


def lease_ttl(settings: Settings) -> timedelta:
    """How long the sweeper lease lasts without renewal: two intervals, at least a minute."""
    return timedelta(seconds=max(60.0, 2 * interval(settings)))


class _HeldLease:
    """The sweeper lease of one sweep: taken at the start, renewed as it goes, given back at the end."""

    def __init__(
        self, session_factory: sessionmaker[Session], *, holder: str, now: datetime, ttl: timedelta
    ) -> None:
        self.session_factory = session_factory
        self.holder = holder
        self.start = now
        self.ttl = ttl
        self.started = time.perf_counter()
        self.renewed = self.started

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed())

    def take(self) -> bool:
        return leases.take(
            self.session_factory, name=SWEEP_LEASE, holder=self.holder, now=self.now(), ttl=self.ttl
        )

    def renew(self) -> None:
        """Renew once a quarter of the lease has passed; raise LeaseLost if another holder has it."""
        if time.perf_counter() - self.renewed < self.ttl.total_seconds() / 4:
            return
        if not self.take():
            raise LeaseLost(f"the sweeper lease passed to another process after {self.elapsed():.0f}s")
        self.renewed = time.perf_counter()

    def release(self) -> None:
        leases.release(self.session_factory, name=SWEEP_LEASE, holder=self.holder, now=self.start, ran=True)


def _observe(report: SweepReport) -> None:
    from petportrait.lifecycle import metrics

    metrics.observe_sweep(report)


def _due_rows(
    session: Session,
    kind: str,
    model: Any,
    condition: Any,
    *,
    now: datetime,
    limit: int,
    skip: Collection[str],
) -> list[Any]:
    clock = getattr(model, policy.KINDS[kind].clock)
    query = (
        select(
            model.id,
            model.owner_id,
            model.storage_key,
            model.sha256,
            getattr(model, "size", null()).label("size"),
            getattr(model, "pet_id", null()).label("pet_id"),
            clock.label("created_at"),
            model.expires_at,
        )
        .where(condition, ~holds.held_clause(kind, model.id, model.owner_id, at=now))
        .limit(limit)
    )
    if skip:
        query = query.where(model.id.not_in(list(skip)))
    return list(session.execute(query).all())


class _Recorder:
    """Records swept batches in a thread of its own, one at a time, while the sweep deletes the blobs of
    the next batch (of the same kind or the next one)."""

    def __init__(self, pool: ThreadPoolExecutor, report: SweepReport) -> None:
        self.pool = pool
        self.report = report
        self.pending: tuple[Future[None], str, str, int] | None = None

    def settle(self) -> str | None:
        """Wait for the batch being recorded; returns its kind if it could not be recorded (someone deleted
        one of its items meanwhile: the error is reported and the next run retries the rest)."""
        if self.pending is None:
            return None
        future, kind, reason, count = self.pending
        self.pending = None
        try:
            future.result()
        except IntegrityError as exc:
            self.report.errors.append(f"{kind}: batch not recorded, will retry: {exc.orig}")
            return kind
        self.report.purged[kind] = self.report.purged.get(kind, 0) + count
        self.report.reasons[reason] = self.report.reasons.get(reason, 0) + count
        return None

    @property
    def pending_kind(self) -> str | None:
        return None if self.pending is None else self.pending[1]

    def record(self, kind: str, reason: str, count: int, fn: Callable[[], None]) -> None:
        """Start recording a batch; the caller has settled the previous one."""
        assert self.pending is None
        self.pending = (self.pool.submit(fn), kind, reason, count)


def _sweep_kind(
    session_factory: sessionmaker[Session],
    blobs: BlobStore,
    kind: str,
    model: Any,
    *,
    now: datetime,
    settings: Settings,
    batch_size: int,
    report: SweepReport,
    fault: Fault | None,
    lease: _HeldLease,
    recorder: _Recorder,
) -> None:
    """Sweep one kind batch by batch: while one batch is recorded, the next one's blobs are deleted.

    Due rows are read a window of several batches at a time. Just before its blobs go, each batch is
    checked again against the legal holds (one placed since the window was read wins). A batch is
    recorded (tombstones, row deletions, audit) only after all its blobs are gone, one batch at a time.
    A batch that could not be recorded stops this kind's sweep (the next run retries it).
    """
    failed: set[str] = set()
    window = batch_size * _WINDOW_BATCHES
    erased = registry_from(session_factory).erased_owners()
    for reason, condition in policy.due_phases(model, now=now, settings=settings, erased=erased):
        while True:
            # a batch of this kind still being recorded is still due: wait for it before reading again
            if recorder.pending_kind == kind and recorder.settle() == kind:
                return
            with session_factory() as session:
                rows = _due_rows(session, kind, model, condition, now=now, limit=window, skip=failed)
            for start in range(0, len(rows), batch_size):
                batch = _not_held(session_factory, kind, rows[start : start + batch_size], now=now)
                keys = [row.storage_key for row in batch if row.storage_key]
                failures = blobops.delete_many(blobs, keys)
                for key, error in failures.items():
                    report.errors.append(f"{kind}: could not delete blob {key}: {error}")
                if fault is not None:
                    fault("after_blobs")
                done = [row for row in batch if not row.storage_key or row.storage_key not in failures]
                failed.update(row.id for row in batch if row.storage_key and row.storage_key in failures)
                if recorder.settle() == kind:  # (a batch of the kind before failing stops only that kind)
                    return
                if done:
                    recorder.record(
                        kind,
                        reason,
                        len(done),
                        partial(
                            _bury, session_factory, kind, model, done, reason=reason, now=now, fault=fault
                        ),
                    )
                lease.renew()
            if len(rows) < window:
                break


def _not_held(
    session_factory: sessionmaker[Session], kind: str, rows: Sequence[Any], *, now: datetime
) -> list[Any]:
    """The rows that no legal hold in force covers now."""
    with session_factory() as session:
        held = session.execute(
            select(LegalHold.scope, LegalHold.owner_id, LegalHold.subject_id).where(
                holds.active_at_clause(now),
                or_(
                    and_(
                        LegalHold.scope == HoldScope.ACCOUNT.value,
                        LegalHold.owner_id.in_({row.owner_id for row in rows}),
                    ),
                    and_(
                        LegalHold.scope == HoldScope.ITEM.value,
                        LegalHold.subject_kind == kind,
                        LegalHold.subject_id.in_([row.id for row in rows]),
                    ),
                ),
            )
        ).all()
    if not held:
        return list(rows)
    owners = {owner for scope, owner, _ in held if scope == HoldScope.ACCOUNT.value}
    items = {item for scope, _, item in held if scope == HoldScope.ITEM.value}
    return [row for row in rows if row.owner_id not in owners and row.id not in items]


def _bury(
    session_factory: sessionmaker[Session],
    kind: str,
    model: Any,
    rows: Sequence[Any],
    *,
    reason: str,
    now: datetime,
    fault: Fault | None,
) -> None:
    """Turn swept rows into tombstones (keeping fingerprints, not hashes) and audit each, in one transaction;
    the free text the audit log holds about these items goes with them."""
    with session_factory() as session:
        sqlite = session.get_bind().dialect.name == "sqlite"
        if sqlite:  # a batch touches index pages all over: keep them cached while it is written,
            # and leave checkpointing the WAL to the end of the sweep (see _checkpoint)
            session.connection().exec_driver_sql(f"PRAGMA cache_size=-{_SQLITE_CACHE_KIB}")
            session.connection().exec_driver_sql("PRAGMA wal_autocheckpoint=0")
        try:
            prints = fingerprints.fingerprints(session, [(row.owner_id, row.sha256) for row in rows])
            stones = [
                tombstone_values(
                    kind,
                    item_id=row.id,
                    owner_id=row.owner_id,
                    created_at=row.created_at,
                    expires_at=row.expires_at,
                    storage_key=row.storage_key,
                    fingerprint=fingerprint,
                    size=row.size,
                    reason=reason,
                    actor_id=None,
                    purged_at=now,
                    pet_id=row.pet_id,
                )
                for row, fingerprint in zip(rows, prints, strict=True)
            ]
            insert_rows(session.connection(), _TOMBSTONES, stones)
            ids = [row.id for row in rows]
            audit.delete_texts(session, subject_kind=kind, subject_ids=ids)
            table = model.__table__  # Core, not ORM: nothing of these rows is loaded
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start : start + _IN_CHUNK]
                session.connection().execute(delete(table).where(table.c.id.in_(chunk)))
            audit.record_many(session, [deletion_event(stone, by="sweeper") for stone in stones], at=now)
            destroy_keys(session, [row.storage_key for row in rows])  # shredded with the tombstones' commit
            emit_many(
                session,
                "item.deleted",
                [
                    (stone["owner_id"], {"kind": kind, "item_id": stone["id"], "reason": reason})
                    for stone in stones
                ],
            )
            if fault is not None:
                fault("before_commit")
            session.commit()
        finally:
            session.rollback()
            if sqlite:
                session.connection().exec_driver_sql("PRAGMA cache_size=-2000")  # SQLite's defaults
                session.connection().exec_driver_sql("PRAGMA wal_autocheckpoint=1000")


def scratch_root(settings: Settings) -> Path:
    """Where workers of earlier versions kept per-job copies of photos, crops and latents."""
    return Path(settings.data_dir) / "scratch"


def remove_scratch(settings: Settings) -> int:
    """Remove everything under DATA_DIR/scratch, whatever host wrote it; returns how many entries.

    Workers of this version write nothing there (a job's derived data lives in its process's memory), so
    every entry is a leftover of an earlier version's worker, dead or alive: none is still needed.
    """
    root = scratch_root(settings)
    if not root.is_dir():
        return 0
    removed = 0
    for entry in list(root.iterdir()):
        try:
            if entry.is_dir() and not entry.is_symlink():
                removed += sum(1 for _ in entry.rglob("*")) + 1
                shutil.rmtree(entry)
            else:
                entry.unlink()
                removed += 1
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("could not remove the scratch leftover %s: %s", entry, exc)
    return removed


def _checkpoint(session_factory: sessionmaker[Session]) -> None:
    """On SQLite, copy the WAL back into the database and truncate it (once, not per batch), so deleted
    values do not linger in the WAL file (secure_delete, set on every connection, zeroes freed pages)."""
    with session_factory() as session:
        if session.get_bind().dialect.name == "sqlite":
            session.connection().exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def _vacuum_data_keys(session_factory: sessionmaker[Session], report: SweepReport) -> None:
    """On PostgreSQL, after a sweep that destroyed data keys, VACUUM data_keys: a destroyed key stays in a
    dead tuple until then (crypto-shredding undone while it does); logs why when it cannot."""
    engine = session_factory.kw.get("bind")
    destroyed = report.total_purged + report.orphans_removed + report.tombstone_blobs_removed
    if engine is None or engine.dialect.name != "postgresql" or not destroyed:
        return
    report.vacuum_skipped = vacuum.vacuum_tables(engine, ["data_keys"])
    report.data_keys_vacuumed = report.vacuum_skipped is None


def _clear_erased_accounts(session_factory: sessionmaker[Session], *, report: SweepReport) -> None:
    """Remove pets, tokens and ended jobs of deleted accounts once nothing of theirs is held."""
    from petportrait.accounts import service as accounts_service  # not at import: it loads the web layer

    erased = registry_from(session_factory).erased_owners()
    with session_scope(session_factory) as session:
        pets = pets_service.delete_emptied_pets(session, erased)
        accounts_service.delete_tokens_of(session, erased)
        session.execute(
            delete(Job)
            .where(Job.owner_id.in_(erased), Job.state.in_(FINAL_STATES))
            .execution_options(synchronize_session=False)
        )
        report.accounts_cleared += pets


def _reconcile_due(session_factory: sessionmaker[Session], *, now: datetime, every: timedelta) -> bool:
    with session_factory() as session:
        mark = session.get(Lease, RECONCILE_MARK)
        if mark is None or mark.last_run_at is None:
            return True
        # a run noted by a process whose clock ran ahead is not taken to be in the future
        return mark.last_run_at <= now - every or mark.last_run_at > now


def _mark_reconciled(session_factory: sessionmaker[Session], *, holder: str, now: datetime) -> None:
    with session_scope(session_factory) as session:
        mark = session.get(Lease, RECONCILE_MARK)
        if mark is None:
            session.add(Lease(name=RECONCILE_MARK, holder=holder, expires_at=now, last_run_at=now))
        else:
            mark.holder, mark.expires_at, mark.last_run_at = holder, now, now


def owned_keys(session: Session, model: Any) -> set[str]:
    """Every storage key that a row of `model` owns."""
    return set(session.scalars(select(model.storage_key).where(model.storage_key.is_not(None))))


def tombstoned_keys(session: Session, keys: Sequence[str]) -> set[str]:
    """Those of `keys` that a tombstone names."""
    found: set[str] = set()
    for start in range(0, len(keys), _IN_CHUNK):
        chunk = list(keys[start : start + _IN_CHUNK])
        found.update(
            k
            for k in session.scalars(select(Tombstone.storage_key).where(Tombstone.storage_key.in_(chunk)))
            if k
        )
    return found


def _reconcile(
    session_factory: sessionmaker[Session],
    blobs: BlobStore,
    *,
    now: datetime,
    grace: timedelta,
    report: SweepReport,
    fault: Fault | None,
    lease: _HeldLease,
) -> None:
    """Delete blobs under item prefixes that no row owns: at once if tombstoned, else after the grace."""
    for kind, model in registry_from(session_factory).item_models.items():
        lease.renew()
        with session_factory() as session:
            owned = owned_keys(session, model)
        unowned = [info for info in blobs.list(policy.KINDS[kind].prefix) if info.key not in owned]
        if not unowned:
            continue
        with session_factory() as session:
            buried = tombstoned_keys(session, [info.key for info in unowned])
            stale = [info.key for info in unowned if info.key in buried or info.modified_at <= now - grace]
            # A row committed since we read the owners keeps its blob.
            for start in range(0, len(stale), _IN_CHUNK):
                chunk = stale[start : start + _IN_CHUNK]
                owned.update(session.scalars(select(model.storage_key).where(model.storage_key.in_(chunk))))
        stale = [key for key in stale if key not in owned]
        if not stale:
            continue
        # Recorded first: an ownerless blob has no row to bring its deletion back to a later run.
        with session_scope(session_factory) as session:
            audit.record_many(
                session,
                [
                    audit.AuditEvent(
                        action="blob.deleted",
                        actor_id=None,
                        subject_kind=kind,
                        purpose="tombstoned" if key in buried else "orphaned",
                        details={"storage_key": key},
                    )
                    for key in stale
                ],
                at=now,
            )
            destroy_keys(session, stale)
        failures = blobops.delete_many(blobs, stale)
        if fault is not None:
            fault("after_orphans")
        removed = [key for key in stale if key not in failures]
        report.errors.extend(f"{kind}: could not delete orphan {k}: {e}" for k, e in failures.items())
        report.tombstone_blobs_removed += sum(1 for key in removed if key in buried)
        report.orphans_removed += sum(1 for key in removed if key not in buried)


def _record_run(session_factory: sessionmaker[Session], report: SweepReport, *, now: datetime) -> None:
    with session_scope(session_factory) as session:
        session.add(
            SweepRun(
                holder=report.holder,
                started_at=now,
                finished_at=now + timedelta(seconds=report.duration_seconds),
                duration_seconds=report.duration_seconds,
                purged=report.total_purged,
                orphans_removed=report.orphans_removed + report.tombstone_blobs_removed,
                errors=len(report.errors),
            )
        )
        session.execute(delete(SweepRun).where(SweepRun.started_at < now - timedelta(days=7)))
