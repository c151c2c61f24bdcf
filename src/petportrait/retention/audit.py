"""The audit log: append-only, each entry hashing the one before it, so an edit or a removal shows.

Every read of a photo's bytes (with its purpose), every deletion, every staff action, every consent
change and every legal hold is written here with `record`. Appends are serialised: on PostgreSQL by a
transaction-scoped advisory lock, on SQLite by the database write lock (taken by a write to the head
row before anything is read), so concurrent appends from many threads or processes still form one
line. The lock is held until the caller's transaction ends; keep audited transactions short.

An entry's hash is SHA-256 over the canonical JSON of
[prev_hash, seq, at, action, actor_id, subject_kind, subject_id, owner_id, purpose, details], and
`audit_head` names the newest entry, so removing the newest entries shows too. `verify` walks the
whole chain (`petportrait audit verify`).

Free text a person or staff wrote (a reply, an appeal, a decision's reasons) is never put in the chain,
which cannot be edited: `text_ref` stores it in `audit_texts` (deletable, with the item it is about or
with the account) and returns {"$text": id, "digest": sha256(id NUL text)} for the details. The chain
hashes that reference, so it stays verifiable once the text is gone; `readable_details` shows the text
while it exists and "(erased)" after. Content hashes are kept as fingerprints (`retention.fingerprints`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.orm import Session

from petportrait.clock import utcnow
from petportrait.db import insert_rows, new_id
from petportrait.retention.models import GENESIS_HASH, AuditEntry, AuditHead, AuditText

HEAD_ID = 1
# A fixed key for pg_advisory_xact_lock ("pp-audit" as a 63-bit number).
_PG_LOCK_KEY = int.from_bytes(b"pp-audit", "big") & 0x7FFF_FFFF_FFFF_FFFF
_MAX_PROBLEMS = 100
_AUDIT_LOG = AuditEntry.metadata.tables["audit_log"]  # Core inserts: the fast path for batches


@dataclass(frozen=True)
class AuditEvent:
    """What one entry says; `record_many` appends several in one lock."""

    action: str
    actor_id: str | None
    subject_kind: str | None = None
    subject_id: str | None = None
    owner_id: str | None = None
    purpose: str | None = None
    details: dict[str, Any] | None = None


@dataclass
class VerifyResult:
    """The outcome of walking the chain: ok, how many entries, the head, and what is wrong."""

    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    problems: list[str] = field(default_factory=list)


_DETAILS_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
_ENTRY_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def canonical_details(details: dict[str, Any] | None) -> str:
    """The details as canonical JSON text (sorted keys, no spaces); datetimes and others become strings."""
    return _DETAILS_JSON.encode(details or {})


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _hash_of(prev_hash: str, seq: int, stamp: str, fields: tuple[str | None, ...], details: str) -> str:
    """SHA-256 of [prev_hash, seq, stamp, action, actor_id, subject_kind, subject_id, owner_id, purpose,
    details] as canonical JSON (`fields` are the six in that order)."""
    return hashlib.sha256(_ENTRY_JSON.encode([prev_hash, seq, stamp, *fields, details]).encode()).hexdigest()


def _fields(event: AuditEvent) -> tuple[str | None, ...]:
    return (event.action, event.actor_id, event.subject_kind, event.subject_id, event.owner_id, event.purpose)


def entry_hash(
    *,
    prev_hash: str,
    seq: int,
    at: datetime,
    action: str,
    actor_id: str | None,
    subject_kind: str | None,
    subject_id: str | None,
    owner_id: str | None,
    purpose: str | None,
    details: str,
) -> str:
    """The hash of one entry given the previous entry's hash."""
    fields = (action, actor_id, subject_kind, subject_id, owner_id, purpose)
    return _hash_of(prev_hash, seq, _stamp(at), fields, details)


def _lock_head(session: Session) -> tuple[int, str]:
    """Take the append lock and return the newest entry's (seq, hash)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    else:
        # A write first, so that SQLite hands this transaction the write lock before anything is read.
        session.execute(update(AuditHead).where(AuditHead.id == HEAD_ID).values(seq=AuditHead.seq))
    row = session.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == HEAD_ID)).one_or_none()
    if row is not None:
        return int(row[0]), str(row[1])
    last = session.execute(
        select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).one_or_none()
    seq, head = (int(last[0]), str(last[1])) if last is not None else (0, GENESIS_HASH)
    session.execute(insert(AuditHead).values(id=HEAD_ID, seq=seq, hash=head))
    return seq, head


def record_many(session: Session, events: Sequence[AuditEvent], *, at: datetime | None = None) -> int:
    """Append several entries in order under one lock; returns the seq of the last (0 if none)."""
    if not events:
        return 0
    at = at or utcnow()
    seq, prev = _lock_head(session)
    stamp = _stamp(at)
    rows: list[dict[str, Any]] = []
    for event in events:
        seq += 1
        details = canonical_details(event.details)
        digest = _hash_of(prev, seq, stamp, _fields(event), details)
        rows.append(
            {
                "seq": seq,
                "at": at,
                "action": event.action,
                "actor_id": event.actor_id,
                "subject_kind": event.subject_kind,
                "subject_id": event.subject_id,
                "owner_id": event.owner_id,
                "purpose": event.purpose,
                "details": details,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    for start in range(0, len(rows), 5000):
        insert_rows(session.connection(), _AUDIT_LOG, rows[start : start + 5000])
    session.execute(update(AuditHead).where(AuditHead.id == HEAD_ID).values(seq=seq, hash=prev))
    return seq


def record(
    session: Session,
    *,
    action: str,
    actor_id: str | None,
    subject_kind: str | None = None,
    subject_id: str | None = None,
    owner_id: str | None = None,
    purpose: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry to the audit log (in the caller's transaction) and return it."""
    event = AuditEvent(
        action=action,
        actor_id=actor_id,
        subject_kind=subject_kind,
        subject_id=subject_id,
        owner_id=owner_id,
        purpose=purpose,
        details=details,
    )
    seq = record_many(session, [event])
    entry = session.get(AuditEntry, seq)
    assert entry is not None
    return entry


ERASED = "(erased)"
_TEXT_REF = "$text"


def _text_digest(text_id: str, value: str) -> str:
    return hashlib.sha256(f"{text_id}\x00{value}".encode()).hexdigest()


def text_ref(
    session: Session,
    value: str,
    *,
    owner_id: str | None,
    subject_kind: str | None = None,
    subject_id: str | None = None,
) -> dict[str, str]:
    """Keep free text outside the chain; returns the reference to put in an entry's details."""
    text_id = new_id()
    digest = _text_digest(text_id, value)
    session.add(
        AuditText(
            id=text_id,
            owner_id=owner_id,
            subject_kind=subject_kind,
            subject_id=subject_id,
            sha256=digest,
            text=value,
            created_at=utcnow(),
        )
    )
    return {_TEXT_REF: text_id, "digest": digest}


def _refs(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if isinstance(value.get(_TEXT_REF), str):
            yield value
        else:
            for inner in value.values():
                yield from _refs(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _refs(inner)


def _resolve(value: Any, texts: dict[str, AuditText]) -> Any:
    if isinstance(value, dict):
        ref = value.get(_TEXT_REF)
        if isinstance(ref, str):
            row = texts.get(ref)
            if row is None:
                return ERASED
            if row.sha256 != value.get("digest") or _text_digest(row.id, row.text) != row.sha256:
                return "(altered)"
            return row.text
        return {k: _resolve(v, texts) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, texts) for v in value]
    return value


def readable_details(session: Session, entries: Sequence[AuditEntry]) -> list[dict[str, Any]]:
    """Each entry's details with its free text: the text while it exists, "(erased)" after."""
    parsed = [json.loads(entry.details or "{}") for entry in entries]
    ids = sorted({ref[_TEXT_REF] for details in parsed for ref in _refs(details)})
    texts: dict[str, AuditText] = {}
    for start in range(0, len(ids), 500):
        texts.update(
            (row.id, row)
            for row in session.scalars(select(AuditText).where(AuditText.id.in_(ids[start : start + 500])))
        )
    return [_resolve(details, texts) for details in parsed]


def delete_texts(
    session: Session,
    *,
    owner_id: str | None = None,
    subject_kind: str | None = None,
    subject_ids: Sequence[str] = (),
) -> None:
    """Delete the free text of an account (owner_id) or about some items (subject_kind, subject_ids)."""
    if owner_id is not None:
        session.execute(
            delete(AuditText)
            .where(AuditText.owner_id == owner_id)
            .execution_options(synchronize_session=False)
        )
    ids = list(subject_ids)
    for start in range(0, len(ids), 500):
        session.execute(
            delete(AuditText)
            .where(AuditText.subject_kind == subject_kind, AuditText.subject_id.in_(ids[start : start + 500]))
            .execution_options(synchronize_session=False)
        )


def erase_texts(session: Session, user_id: str, actor_id: str | None) -> None:
    """Erasure hook: the account's free text leaves the audit log's side table (the chain stays valid)."""
    _ = actor_id
    delete_texts(session, owner_id=user_id)


def iter_entries(session: Session, *, owner_id: str | None = None, batch: int = 5000) -> Iterator[AuditEntry]:
    """Entries in chain order, optionally only those about one person's data."""
    after = 0
    while True:
        query = select(AuditEntry).where(AuditEntry.seq > after).order_by(AuditEntry.seq).limit(batch)
        if owner_id is not None:
            query = query.where(AuditEntry.owner_id == owner_id)
        chunk = list(session.scalars(query))
        if not chunk:
            return
        yield from chunk
        after = chunk[-1].seq


def verify(session: Session) -> VerifyResult:
    """Walk the chain from the first entry: contiguous seqs, each prev_hash linking, each hash right,
    and the head naming the last entry."""
    problems: list[str] = []
    first_bad: int | None = None

    def problem(seq: int, message: str) -> None:
        nonlocal first_bad
        if first_bad is None or seq < first_bad:
            first_bad = seq
        if len(problems) < _MAX_PROBLEMS:
            problems.append(message)

    expected_seq = 1
    prev = GENESIS_HASH
    count = 0
    after = 0
    columns = (
        AuditEntry.seq,
        AuditEntry.at,
        AuditEntry.action,
        AuditEntry.actor_id,
        AuditEntry.subject_kind,
        AuditEntry.subject_id,
        AuditEntry.owner_id,
        AuditEntry.purpose,
        AuditEntry.details,
        AuditEntry.prev_hash,
        AuditEntry.hash,
    )
    while True:
        rows = session.execute(
            select(*columns).where(AuditEntry.seq > after).order_by(AuditEntry.seq).limit(10_000)
        ).all()
        if not rows:
            break
        for seq, at, action, actor, skind, sid, owner, purpose, details, prev_hash, digest in rows:
            count += 1
            if seq != expected_seq:
                problem(seq, f"entries {expected_seq} to {seq - 1} are missing")
            if prev_hash != prev:
                problem(seq, f"entry {seq} does not link to the entry before it (prev_hash differs)")
            recomputed = entry_hash(
                prev_hash=prev_hash,
                seq=seq,
                at=at,
                action=action,
                actor_id=actor,
                subject_kind=skind,
                subject_id=sid,
                owner_id=owner,
                purpose=purpose,
                details=details,
            )
            if recomputed != digest:
                problem(seq, f"entry {seq} was altered (its hash does not match its content)")
            prev = digest
            expected_seq = seq + 1
        after = rows[-1][0]
    last_seq = expected_seq - 1
    head = session.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == HEAD_ID)).one_or_none()
    head_seq, head_hash = (int(head[0]), str(head[1])) if head is not None else (0, GENESIS_HASH)
    if head is None and count:
        problem(last_seq + 1, "the audit head is missing")
    elif head is not None and (head_seq != last_seq or head_hash != prev):
        problem(
            min(head_seq, last_seq) + 1,
            f"the head names entry {head_seq} but the chain ends at entry {last_seq}: "
            "entries were removed from the end, or the head was altered",
        )
    return VerifyResult(
        ok=not problems,
        entries=count,
        head_seq=head_seq,
        head_hash=head_hash,
        first_bad_seq=first_bad,
        problems=problems,
    )
