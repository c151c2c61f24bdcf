"""`petportrait retention check`: scan the database and the storage for anything the policy forbids.

Findings (any one makes the check fail):
- overdue: an item still stored more than one sweep interval after it fell due (expired, or its account
  deleted), that no legal hold covered during that interval;
- deleted_early: a tombstone of an item the service deleted as expired before its period had passed;
- orphan_blob: a blob under an item prefix that no row owns, older than the grace period plus the time the
  reconciliation may take to come round;
- tombstone_blob: a blob whose key a tombstone names (the item was deleted; its bytes must be too);
- missing_blob: a live item whose blob is not in storage;
- unlisted_blob: a blob under a prefix that the retention policy does not list;
- plaintext_blob, no_key, undecryptable: (encrypted stores) a blob stored in plaintext, a blob whose data
  key is gone while the blob is still stored, a blob that does not decrypt (tampered with, truncated, or
  sealed under another key-encryption key) (`deep` decrypts every blob whole, else its first segment);
- tombstone_key: the data key of a deleted item still exists (its blob could still be read from a copy);
- old_version: (S3 buckets with versioning) a noncurrent version or delete marker of a deleted item's
  key, or of a key that no row owns: the bytes of a deleted item still readable as an older version;
- no_retention_rule: a table of the schema that no domain gave a retention rule (`registry.add_table_rule`;
  a table holding no personal data gets a rule that says so);
- raw_hash: a bare content sha256 kept where it outlives its item (a tombstone, an audit entry's details,
  a consent receipt, a generation record), instead of a fingerprint under the account's key;
- what the data inventory forbids (lifecycle/residues.py): undeclared folders and Redis keys, rows of
  erased accounts, copies naming deleted items, and each store's own residues;
- autovacuum_off: (PostgreSQL) autovacuum is off for the server or a personal table, so deleted rows and
  destroyed data keys stay in dead tuples (lifecycle.vacuum); the detail counts them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import MetaData, func, or_, select
from sqlalchemy.orm import Session

from petportrait.clock import utcnow
from petportrait.db import Base
from petportrait.lifecycle import residues, vacuum
from petportrait.lifecycle.sweeper import DEFAULT_RECONCILE_SECONDS, interval
from petportrait.registry import registry_of
from petportrait.retention import fingerprints, holds, policy
from petportrait.retention.models import AuditEntry, DataKey, DeletionReason, Tombstone
from petportrait.settings import Settings
from petportrait.storage.base import BlobNotFound, BlobStore
from petportrait.storage.crypto import EncryptedBlobStore

_IN_CHUNK = 500


@dataclass(frozen=True)
class Finding:
    """One thing the policy forbids, found."""

    problem: str
    kind: str
    item_id: str | None = None
    owner_id: str | None = None
    storage_key: str | None = None
    detail: str = ""


@dataclass
class CheckReport:
    """The findings of one check, and how much was looked at."""

    checked_at: datetime
    findings: list[Finding] = field(default_factory=list)
    rows_checked: int = 0
    blobs_checked: int = 0
    tombstones_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings

    def counts(self) -> dict[str, int]:
        """How many findings of each problem."""
        return dict(Counter(f.problem for f in self.findings))


def run_check(
    session: Session,
    blobs: BlobStore,
    *,
    settings: Settings,
    now: datetime | None = None,
    reconcile_interval: float = DEFAULT_RECONCILE_SECONDS,
    deep: bool = False,
    metadata: MetaData | None = None,
    redis_keys: Iterable[str] = (),
) -> CheckReport:
    """Scan rows, tombstones and blobs; see the module docstring for what counts as a finding.
    `metadata` is the schema whose tables must each have a retention rule (default: every table);
    `redis_keys` are the keys of the deployment's Redis (queue, rate limits), each under a declared prefix."""
    now = now or utcnow()
    report = CheckReport(checked_at=now)
    _scan_table_rules(session, metadata or Base.metadata, report=report)
    _scan_raw_hashes(session, report=report)
    for problem, store, detail in residues.scan(session, settings=settings, redis_keys=redis_keys):
        report.findings.append(Finding(problem, store, detail=detail))
    slack = timedelta(seconds=interval(settings))
    cutoff = now - slack
    grace = timedelta(seconds=settings.retention.orphan_grace_seconds)
    orphan_cutoff = now - grace - slack - timedelta(seconds=reconcile_interval)

    owned: dict[str, dict[str, bool]] = {}  # kind -> key -> whether the row is live (not due)
    for kind, model in registry_of(session).item_models.items():
        owned[kind] = _scan_rows(
            session, kind, model, now=now, cutoff=cutoff, settings=settings, report=report
        )
    _scan_tombstones(session, settings=settings, report=report)

    listed: set[str] = set()
    unowned: dict[str, list[Any]] = {}
    for info in blobs.list(""):
        report.blobs_checked += 1
        listed.add(info.key)
        spec = policy.kind_for_key(info.key)
        if spec is None:
            report.findings.append(
                Finding(
                    "unlisted_blob", "?", storage_key=info.key, detail="no retention rule covers this prefix"
                )
            )
        elif spec.name in owned and info.key not in owned[spec.name]:
            unowned.setdefault(spec.name, []).append(info)

    for kind, infos in unowned.items():
        buried = _tombstoned(session, [info.key for info in infos])
        for info in infos:
            if info.key in buried:
                report.findings.append(
                    Finding(
                        "tombstone_blob",
                        kind,
                        item_id=buried[info.key],
                        storage_key=info.key,
                        detail="the item was deleted but its blob is still stored",
                    )
                )
            elif info.modified_at <= orphan_cutoff:
                report.findings.append(
                    Finding(
                        "orphan_blob",
                        kind,
                        storage_key=info.key,
                        detail=f"no row owns this blob, written {info.modified_at.isoformat()}",
                    )
                )
    for kind, keys in owned.items():
        for key, live in keys.items():
            if live and key not in listed:
                report.findings.append(
                    Finding(
                        "missing_blob", kind, storage_key=key, detail="a live item's blob is not in storage"
                    )
                )
    if isinstance(blobs, EncryptedBlobStore):
        _scan_encryption(blobs, sorted(listed), deep=deep, report=report)
    _scan_tombstone_keys(session, report=report)
    _scan_versions(session, getattr(blobs, "inner", blobs), owned=owned, report=report)
    _scan_scratch(settings, report=report)
    _scan_autovacuum(session, report=report)
    return report


def _scan_autovacuum(session: Session, *, report: CheckReport) -> None:
    """(PostgreSQL) Report the server or each personal table where autovacuum does not run."""
    tables = vacuum.personal_tables(registry_of(session))
    for off in vacuum.autovacuum_off(session.connection(), tables):
        report.findings.append(
            Finding("autovacuum_off", off.table, detail=f"{off.reason}; {off.dead_tuples} dead tuples")
        )


def _scan_scratch(settings: Settings, *, report: CheckReport) -> None:
    """Any file under DATA_DIR/scratch: workers of earlier versions copied photos, crops and latents there
    (this version writes none); the sweeper removes them, whatever host wrote them."""
    from petportrait.lifecycle.sweeper import scratch_root

    root = scratch_root(settings)
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        if path.is_file() or path.is_symlink():
            report.findings.append(
                Finding(
                    "scratch_leftover",
                    "scratch",
                    storage_key=str(path.relative_to(settings.data_dir)),
                    detail="a worker's file left on disk; the next sweep removes it",
                )
            )


def _scan_encryption(blobs: EncryptedBlobStore, keys: list[str], *, deep: bool, report: CheckReport) -> None:
    """Report every listed blob that cannot be decrypted, has no key, or is still plaintext."""
    details = {
        "plaintext": ("plaintext_blob", "stored unencrypted; run `petportrait retention encrypt-existing`"),
        "no_key": ("no_key", "its data key is gone (the item was deleted) but the blob is still stored"),
        "undecryptable": ("undecryptable", "does not decrypt: tampered with, truncated, or another KEK"),
    }
    for key in keys:
        try:
            problem = blobs.inspect(key, deep=deep)
        except BlobNotFound:
            continue  # deleted since it was listed
        if problem is not None:
            spec = policy.kind_for_key(key)
            code, detail = details[problem]
            report.findings.append(Finding(code, spec.name if spec else "?", storage_key=key, detail=detail))


def _scan_tombstone_keys(session: Session, *, report: CheckReport) -> None:
    """Report data keys that outlived their item (a tombstone names their storage key)."""
    rows = session.execute(
        select(Tombstone.id, Tombstone.kind, Tombstone.storage_key).join(
            DataKey, DataKey.storage_key == Tombstone.storage_key
        )
    ).all()
    for item_id, kind, key in rows:
        report.findings.append(
            Finding(
                "tombstone_key",
                kind,
                item_id=item_id,
                storage_key=key,
                detail="the item was deleted but its data key still exists",
            )
        )


def _scan_versions(
    session: Session, store: Any, *, owned: dict[str, dict[str, bool]], report: CheckReport
) -> None:
    """On a versioned S3 bucket, report old versions of keys that no live row owns."""
    versions = getattr(store, "versions", None)
    status = getattr(store, "versioning", None)
    if versions is None or status is None or not status():
        return
    live = {key for keys in owned.values() for key in keys}
    stale: dict[str, list[Any]] = {}
    for version in versions(""):
        if version.is_latest and not version.is_delete_marker:
            continue  # the current object: the checks above cover it
        if version.key not in live:
            stale.setdefault(version.key, []).append(version)
    buried = _tombstoned(session, list(stale))
    for key, found in stale.items():
        spec = policy.kind_for_key(key)
        why = "of a deleted item" if key in buried else "of a key that no row owns"
        report.findings.append(
            Finding(
                "old_version",
                spec.name if spec else "?",
                item_id=buried.get(key),
                storage_key=key,
                detail=f"{len(found)} old version(s) or delete marker(s) {why} are still in the bucket",
            )
        )


def _scan_rows(
    session: Session,
    kind: str,
    model: Any,
    *,
    now: datetime,
    cutoff: datetime,
    settings: Settings,
    report: CheckReport,
) -> dict[str, bool]:
    """Report overdue rows; return every stored key with whether its row is live."""
    keys: dict[str, bool] = {}
    due_now = policy.due_clause(
        model, now=now, settings=settings, erased=registry_of(session).erased_owners()
    )
    rows = session.execute(select(model.storage_key, due_now.label("due"))).all()
    for key, due in rows:
        report.rows_checked += 1
        if key:
            keys[key] = not due
    erased_by_cutoff = model.owner_id.in_(registry_of(session).erased_owners(before=cutoff))
    overdue = session.execute(
        select(
            model.id, model.owner_id, model.storage_key, model.expires_at, erased_by_cutoff.label("erased")
        ).where(
            or_(policy.expired_clause(model, now=cutoff, settings=settings), erased_by_cutoff),
            ~holds.held_since_clause(kind, model.id, model.owner_id, since=cutoff, now=now),
        )
    ).all()
    for item_id, owner_id, key, expires_at, erased in overdue:
        why = "its account was erased" if erased else f"expired at {expires_at}"
        report.findings.append(
            Finding(
                "overdue",
                kind,
                item_id=item_id,
                owner_id=owner_id,
                storage_key=key,
                detail=f"still stored more than one sweep interval after it fell due ({why})",
            )
        )
    return keys


def _scan_tombstones(session: Session, *, settings: Settings, report: CheckReport) -> None:
    """Report items the sweeper deleted as expired before their period had passed."""
    report.tombstones_checked = int(session.scalar(select(func.count()).select_from(Tombstone)) or 0)
    early = session.execute(
        select(
            Tombstone.id,
            Tombstone.kind,
            Tombstone.owner_id,
            Tombstone.storage_key,
            Tombstone.created_at,
            Tombstone.expires_at,
            Tombstone.purged_at,
        ).where(Tombstone.reason == DeletionReason.EXPIRED.value, Tombstone.purged_at < Tombstone.expires_at)
    ).all()
    for item_id, kind, owner_id, key, created_at, expires_at, purged_at in early:
        length = policy.period(kind, settings) if kind in policy.KINDS else None
        if created_at is not None and length is not None and purged_at >= created_at + length:
            continue  # a shortened setting made it due before its recorded expiry
        report.findings.append(
            Finding(
                "deleted_early",
                kind,
                item_id=item_id,
                owner_id=owner_id,
                storage_key=key,
                detail=f"deleted at {purged_at.isoformat()}, before it expired at {expires_at}",
            )
        )


def _tombstoned(session: Session, keys: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for start in range(0, len(keys), _IN_CHUNK):
        chunk = keys[start : start + _IN_CHUNK]
        for item_id, key in session.execute(
            select(Tombstone.id, Tombstone.storage_key).where(Tombstone.storage_key.in_(chunk))
        ):
            if key is not None:
                found[key] = item_id
    return found


def _scan_table_rules(session: Session, metadata: MetaData, *, report: CheckReport) -> None:
    """Report every table that no domain gave a retention rule."""
    rules = registry_of(session).table_rules
    for table in sorted(metadata.tables):
        if table not in rules and table != "alembic_version":
            report.findings.append(
                Finding(
                    "no_retention_rule",
                    table,
                    detail=f"no domain registered a retention rule for the table {table} "
                    "(registry.add_table_rule in its register(); 'no personal data' if so)",
                )
            )


_RAW = fingerprints.RAW_HASH


def _scan_raw_hashes(session: Session, *, report: CheckReport, batch: int = 10_000) -> None:
    """Report content hashes kept in audit entries (which outlive their item), where only fingerprints may
    be; receipts and generation records are scanned by their stores' residues."""
    after = 0
    while True:
        rows = session.execute(
            select(
                AuditEntry.seq,
                AuditEntry.subject_kind,
                AuditEntry.subject_id,
                AuditEntry.owner_id,
                AuditEntry.details,
            )
            .where(AuditEntry.seq > after, AuditEntry.details.contains("sha256"))
            .order_by(AuditEntry.seq)
            .limit(batch)
        ).all()
        if not rows:
            break
        for seq, kind, item_id, owner_id, details in rows:
            if _RAW.search(details or ""):
                report.findings.append(
                    Finding(
                        "raw_hash",
                        kind or "?",
                        item_id=item_id,
                        owner_id=owner_id,
                        detail=f"audit entry {seq} keeps a content sha256 (it outlives the item)",
                    )
                )
        after = rows[-1][0]

