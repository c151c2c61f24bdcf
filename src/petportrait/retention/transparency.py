"""The transparency log of the audit chain: a Merkle tree (RFC 9162) over the chain, signed checkpoints
(C2SP signed notes, Ed25519), inclusion and consistency proofs, witnesses' cosignatures, and receipts.

Leaf i is the chain hash of audit entry seq = i + 1 (leaf hash SHA-256(0x00 || entry hash)): the tree holds
only hashes, so erasing free text (which the chain keeps only as a salted digest) leaves every proof valid.
`integrate` extends the tree with the entries appended since it last ran, storing the hash of every perfect
subtree it completes (table `tlog_nodes`), so a proof reads O(log n) rows; it runs under a lock of its own
(`tlog_state`), apart from the appends. `sign_checkpoint` integrates and signs the new size, by a periodic
task and whenever a receipt needs an entry not yet covered. A checkpoint someone kept is what makes a
rewrite show: a log recomputed with another history cannot prove that it extends that checkpoint.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import and_, delete, func, insert, or_, select, text, update
from sqlalchemy.orm import Session

from petportrait.clock import utcnow
from petportrait.db import insert_rows, new_id
from petportrait.retention import merkle, secret_files, signed_notes
from petportrait.retention.audit import canonical_details
from petportrait.retention.models import AuditEntry
from petportrait.retention.receipt_check import RECEIPT_FORMAT
from petportrait.retention.transparency_models import TlogCheckpoint, TlogCosignature, TlogNode, TlogState
from petportrait.settings import Settings, decode_signing_seed

log = logging.getLogger(__name__)


STATE_ID = 1
# A fixed key for pg_advisory_xact_lock ("pp-tlog" as a number), apart from the audit append lock.
_PG_LOCK_KEY = int.from_bytes(b"pp-tlog", "big")
_NODES = TlogNode.metadata.tables["tlog_nodes"]
_IN_CHUNK = 500
# How many entries one transaction integrates at most (SQLite's write lock is held meanwhile).
INTEGRATION_STEP = 50_000


class SigningKeyMissing(RuntimeError):
    """Production without transparency.signing_key."""


class UnknownEntry(LookupError):
    """No audit entry (or none in the tree yet) at that index or size."""


# ---- the signing key ---------------------------------------------------------------------------------


def signing_key_path(settings: Settings) -> Path:
    """Where the development signing key is kept."""
    return (settings.data_dir / "keys" / "transparency-ed25519.b64").resolve()


def load_signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The log's Ed25519 key: from the settings, or (outside production) made once in the data folder."""
    configured = settings.transparency.signing_key
    if configured:
        return Ed25519PrivateKey.from_private_bytes(decode_signing_seed(configured))
    if settings.environment == "production":
        raise SigningKeyMissing("transparency.signing_key is required in production")
    seed = decode_signing_seed(secret_files.read_or_make(signing_key_path(settings)))
    return Ed25519PrivateKey.from_private_bytes(seed)


def origin(settings: Settings) -> str:
    """The log's origin line: the setting, or the base URL's host and path followed by "/audit-log"."""
    if settings.transparency.origin:
        return settings.transparency.origin
    parts = urlsplit(settings.public_base_url)
    return f"{parts.netloc}{parts.path.rstrip('/')}/audit-log"


def key_name(settings: Settings) -> str:
    """The name the log signs with (its origin unless set)."""
    return settings.transparency.key_name or origin(settings)


def verifier_key(settings: Settings) -> str:
    """The log's public key as a C2SP verifier key."""
    return signed_notes.verifier_key(key_name(settings), load_signing_key(settings).public_key())


# ---- the tree --------------------------------------------------------------------------------------


def _lock_state(session: Session) -> int:
    """Take the integration lock; returns how many leaves the tree holds."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    else:  # a write first, so that SQLite hands this transaction the write lock before anything is read
        session.execute(update(TlogState).where(TlogState.id == STATE_ID).values(size=TlogState.size))
    size = session.scalar(select(TlogState.size).where(TlogState.id == STATE_ID))
    if size is None:
        session.execute(insert(TlogState).values(id=STATE_ID, size=0))
        return 0
    return int(size)


def tree_size(session: Session) -> int:
    """How many audit entries the tree holds now."""
    return int(session.scalar(select(TlogState.size).where(TlogState.id == STATE_ID)) or 0)


def read_nodes(session: Session, nodes: Sequence[merkle.Node]) -> dict[merkle.Node, bytes]:
    """The stored hashes of these perfect subtrees (those that exist), in one query per 500."""
    found: dict[merkle.Node, bytes] = {}
    for start in range(0, len(nodes), _IN_CHUNK):
        by_level: dict[int, list[int]] = {}
        for level, index in nodes[start : start + _IN_CHUNK]:
            by_level.setdefault(level, []).append(index)
        wanted = or_(
            *(and_(TlogNode.level == level, TlogNode.idx.in_(indexes)) for level, indexes in by_level.items())
        )
        rows = session.execute(select(TlogNode.level, TlogNode.idx, TlogNode.hash).where(wanted))
        found.update(((int(level), int(idx)), bytes(digest)) for level, idx, digest in rows)
    return found


def integrate(session: Session, *, batch: int = 20_000, limit: int | None = None) -> int:
    """Add the audit entries appended since the last integration to the tree (in the caller's
    transaction), at most `limit` of them; returns the new tree size. Stops at a gap in the chain's seqs."""
    size = _lock_state(session)
    end = None if limit is None else size + limit
    edge = read_nodes(session, merkle.Frontier.edge_nodes(size))
    frontier = merkle.Frontier(size, {level: digest for (level, _), digest in edge.items()})
    connection = session.connection()
    while True:
        rows = session.execute(
            select(AuditEntry.seq, AuditEntry.hash)
            .where(AuditEntry.seq > frontier.size)
            .order_by(AuditEntry.seq)
            .limit(batch if end is None else min(batch, end - frontier.size))
        ).all()
        leaves: list[bytes] = []
        for seq, digest in rows:
            if seq != frontier.size + len(leaves) + 1:
                log.error(
                    "audit entry %s follows %s: the tree stops at the gap", seq, frontier.size + len(leaves)
                )
                rows = []
                break
            leaves.append(merkle.leaf_hash(bytes.fromhex(digest)))
        made = frontier.append(leaves)
        for start in range(0, len(made), 10_000):
            insert_rows(
                connection,
                _NODES,
                [
                    {"level": level, "idx": index, "hash": digest}
                    for level, index, digest in made[start : start + 10_000]
                ],
            )
        if len(rows) < batch or frontier.size == end:
            break
    session.execute(update(TlogState).where(TlogState.id == STATE_ID).values(size=frontier.size))
    return frontier.size


def rebuild(session: Session) -> int:
    """Forget the tree and build it again from the audit chain as it is now (after a restore); returns its
    size. Checkpoints signed before stay: if the chain changed, the new tree cannot prove it extends them."""
    _lock_state(session)
    session.execute(delete(TlogNode))
    session.execute(update(TlogState).where(TlogState.id == STATE_ID).values(size=0))
    return integrate(session)


def _reader(session: Session) -> merkle.NodeReader:
    return lambda nodes: read_nodes(session, nodes)


def root_hash(session: Session, size: int) -> bytes:
    """The root of the tree of the first `size` entries."""
    if size > tree_size(session):
        raise UnknownEntry(f"the tree holds fewer than {size} entries")
    return merkle.root(_reader(session), size)


def inclusion_proof(session: Session, *, index: int, size: int) -> list[bytes]:
    """RFC 9162 inclusion proof of leaf `index` (audit seq index + 1) in the tree of `size` leaves."""
    if not 0 <= index < size or size > tree_size(session):
        raise UnknownEntry(f"no leaf {index} in a tree of {size} (the log holds {tree_size(session)})")
    return merkle.range_hashes(_reader(session), merkle.inclusion_ranges(index, size))


def consistency_proof(session: Session, *, first: int, second: int) -> list[bytes]:
    """RFC 9162 consistency proof that the tree of `second` leaves extends the one of `first`."""
    if not 0 <= first <= second or second > tree_size(session):
        raise UnknownEntry(f"no proof from {first} to {second} (the log holds {tree_size(session)})")
    if first in (0, second):
        return []
    return merkle.range_hashes(_reader(session), merkle.consistency_ranges(first, second))


# ---- checkpoints and cosignatures --------------------------------------------------------------------


def latest_checkpoint(session: Session) -> TlogCheckpoint | None:
    """The newest signed checkpoint."""
    return session.scalars(select(TlogCheckpoint).order_by(TlogCheckpoint.size.desc()).limit(1)).first()


def sign_checkpoint(session: Session, settings: Settings, *, limit: int | None = None) -> TlogCheckpoint:
    """Integrate the new entries (at most `limit`) and sign a checkpoint of the tree, unless the newest
    covers it already."""
    size = integrate(session, limit=limit)
    latest = latest_checkpoint(session)
    if latest is not None and latest.size >= size:
        return latest
    root = merkle.root(_reader(session), size)
    body = signed_notes.checkpoint_body(origin(settings), size, root)
    note = signed_notes.sign_note(body, key_name(settings), load_signing_key(settings))
    checkpoint = TlogCheckpoint(size=size, root=root.hex(), note=note, created_at=utcnow())
    session.add(checkpoint)
    session.flush()
    log.info("transparency checkpoint signed: size %s", size)
    return checkpoint


def checkpoint_covering(session: Session, settings: Settings, size: int) -> TlogCheckpoint:
    """A checkpoint of at least `size` entries: the newest, or a new one signed now (committed)."""
    latest = latest_checkpoint(session)
    if latest is not None and latest.size >= size:
        return latest
    while True:  # in steps, each its own transaction, so that audit appends are never held up for long
        checkpoint = sign_checkpoint(session, settings, limit=INTEGRATION_STEP)
        session.commit()
        if checkpoint.size >= size:
            return checkpoint
        if latest is not None and checkpoint.size <= latest.size:
            raise UnknownEntry(f"the tree cannot cover entry {size} yet")
        latest = checkpoint


def checkpoint_at(session: Session, size: int) -> TlogCheckpoint | None:
    """The checkpoint signed at exactly this size."""
    return session.get(TlogCheckpoint, size)


class CosignatureRefused(ValueError):
    """A cosignature from a witness that is not on the list, or one too many for a checkpoint."""


def add_cosignature(
    session: Session, settings: Settings, *, tree_size: int, line: str, witness_key: str
) -> TlogCosignature:
    """Keep a witness's cosignature of one of our checkpoints once it verifies (NoteError if not;
    UnknownEntry if no checkpoint has that size; CosignatureRefused for a witness not listed in
    transparency.witnesses, or past max_cosignatures). A second one from the same witness replaces it."""
    allowed = settings.transparency.witnesses
    if allowed and witness_key.strip() not in {key.strip() for key in allowed}:
        raise CosignatureRefused("this log publishes only the cosignatures of the witnesses it lists")
    checkpoint = checkpoint_at(session, tree_size)
    if checkpoint is None:
        raise UnknownEntry(f"no checkpoint of size {tree_size}")
    verifier = signed_notes.parse_verifier_key(witness_key)
    body, _ = signed_notes.split_note(checkpoint.note)
    signed = signed_notes.verify_cosignature(body, line, verifier)
    try:
        signed_at = datetime.fromtimestamp(signed, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise signed_notes.NoteError("the cosignature's time is out of range") from exc
    existing = session.scalars(
        select(TlogCosignature).where(
            TlogCosignature.tree_size == tree_size, TlogCosignature.witness_key == witness_key
        )
    ).first()
    if existing is None and len(cosignatures(session, tree_size)) >= settings.transparency.max_cosignatures:
        raise CosignatureRefused(
            f"this checkpoint has {settings.transparency.max_cosignatures} cosignatures already"
        )
    row = existing or TlogCosignature(id=new_id(), tree_size=tree_size, witness_key=witness_key)
    row.line = line.strip()
    row.signed_at = signed_at
    row.received_at = utcnow()
    session.add(row)
    session.flush()
    return row


def cosignatures(session: Session, tree_size: int) -> list[TlogCosignature]:
    """The cosignatures received for the checkpoint of this size."""
    return list(
        session.scalars(
            select(TlogCosignature).where(TlogCosignature.tree_size == tree_size).order_by(TlogCosignature.id)
        )
    )


def cosigned_note(session: Session, checkpoint: TlogCheckpoint) -> str:
    """The checkpoint's signed note with every cosignature received appended as a signature line."""
    lines = "".join(f"{row.line}\n" for row in cosignatures(session, checkpoint.size))
    return checkpoint.note + lines


# ---- receipts ----------------------------------------------------------------------------------------


def _b64(hashes: Sequence[bytes]) -> list[str]:
    return [base64.b64encode(digest).decode() for digest in hashes]


def entry_record(entry: AuditEntry) -> dict[str, Any]:
    """An audit entry as a receipt carries it: every field its chain hash covers, as stored."""
    return {
        "seq": entry.seq,
        "at": entry.at.astimezone(UTC).isoformat(timespec="microseconds"),
        "action": entry.action,
        "actor_id": entry.actor_id,
        "subject_kind": entry.subject_kind,
        "subject_id": entry.subject_id,
        "owner_id": entry.owner_id,
        "purpose": entry.purpose,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def receipt(session: Session, settings: Settings, seq: int) -> dict[str, Any]:
    """A receipt for audit entry `seq`: the entry, its inclusion proof and the signed checkpoint it was
    proved against, the log's public key and where to fetch newer checkpoints (commits if it signs one)."""
    entry = session.get(AuditEntry, seq)
    if entry is None:
        raise UnknownEntry(f"no audit entry {seq}")
    record = entry_record(entry)
    checkpoint = checkpoint_covering(session, settings, seq)
    return {
        "format": RECEIPT_FORMAT,
        "entry": record,
        "log_index": seq - 1,
        "tree_size": checkpoint.size,
        "inclusion_path": _b64(inclusion_proof(session, index=seq - 1, size=checkpoint.size)),
        "checkpoint": checkpoint.note,
        "log_key": verifier_key(settings),
        "log_url": settings.public_base_url,
        "how_to_check": (
            "pip install petportrait; petportrait verify-receipt THIS_FILE (add --online to also check it "
            "against the log's newest checkpoint; --key to pin the log's key you got elsewhere)"
        ),
    }


def receipt_path(seq: int) -> str:
    """Where the person an entry is about fetches its receipt (under the API prefix)."""
    return f"/api/v1/me/audit/{seq}/receipt"


def subject_seqs(
    session: Session, *, owner_id: str, subjects: Sequence[tuple[str, str]], action: str | None = None
) -> dict[tuple[str, str], int]:
    """The newest audit entry (seq) about each (subject_kind, subject_id) of this owner."""
    found: dict[tuple[str, str], int] = {}
    ids = sorted({subject_id for _, subject_id in subjects})
    for start in range(0, len(ids), _IN_CHUNK):
        query = select(AuditEntry.subject_kind, AuditEntry.subject_id, func.max(AuditEntry.seq)).where(
            AuditEntry.owner_id == owner_id, AuditEntry.subject_id.in_(ids[start : start + _IN_CHUNK])
        )
        if action is not None:
            query = query.where(AuditEntry.action == action)
        for kind, subject_id, seq in session.execute(
            query.group_by(AuditEntry.subject_kind, AuditEntry.subject_id)
        ):
            found[(str(kind), str(subject_id))] = int(seq)
    return {subject: found[subject] for subject in subjects if subject in found}


def seqs_naming(session: Session, *, owner_id: str, subject_id: str, key: str, value: str) -> list[int]:
    """Seqs of the entries about `subject_id` of this owner whose details say key = value, oldest first."""
    marker = canonical_details({key: value})[1:-1]
    return [
        int(seq)
        for seq in session.scalars(
            select(AuditEntry.seq)
            .where(
                AuditEntry.owner_id == owner_id,
                AuditEntry.subject_id == subject_id,
                AuditEntry.details.contains(marker, autoescape=True),
            )
            .order_by(AuditEntry.seq)
        )
    ]


@dataclass(frozen=True)
class CheckpointPage:
    """A page of checkpoints, newest first."""

    items: list[TlogCheckpoint]
    next_before: int | None


def list_checkpoints(session: Session, *, before: int | None, limit: int) -> CheckpointPage:
    """Checkpoints older than `before` (a size), newest first."""
    query = select(TlogCheckpoint).order_by(TlogCheckpoint.size.desc()).limit(limit + 1)
    if before is not None:
        query = query.where(TlogCheckpoint.size < before)
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return CheckpointPage(items=rows, next_before=rows[-1].size if more and rows else None)


def proof_json(hashes: Sequence[bytes]) -> list[str]:
    """Proof hashes as base64 strings."""
    return _b64(hashes)


def run_periodic(session_factory: Any, settings: Settings) -> Mapping[str, int]:
    """The periodic task: sign a checkpoint of the entries appended since the last one (a long backlog,
    such as a log older than the tree, in steps of INTEGRATION_STEP entries, one transaction each)."""
    while True:
        with session_factory() as session:
            before = tree_size(session)
            checkpoint = sign_checkpoint(session, settings, limit=INTEGRATION_STEP)
            session.commit()
        if checkpoint.size - before < INTEGRATION_STEP:
            return {"size": checkpoint.size}
