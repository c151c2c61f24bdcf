"""Fingerprints that end with their account: HMAC-SHA256 of a content hash under a per-account key.

What outlives an item (its tombstone, the audit entry of its deletion, a consent receipt) keeps
`fingerprint(...)` = "hmac-sha256:" + HMAC(account key, sha256) instead of the raw sha256: the person (or
support, while the account lives) can still match a receipt against a file they hold, but once the
account is erased its key is wiped (`destroy_on_erasure`, an erasure hook) and no fingerprint can be
linked to any content again. Keys are made on first use; an erased account never gets a new one.

A bare 64-hex `sha256` anywhere that outlives its item is what `retention check` reports (`raw_hash`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from petportrait.clock import utcnow
from petportrait.retention.models import FingerprintKey

PREFIX = "hmac-sha256:"

RAW_HASH = re.compile(r'"(?:sha256|photo_sha256|lora_sha256)":\s*(?:"[0-9a-f]{64}"|"\[)')
"""A bare content sha256 in JSON: where it outlives its item, only a fingerprint may be kept."""


def raw_hash_residues(rows: Any, *, what: str) -> list[tuple[str, str]]:
    """Residues for `retention check`: each (id, owner_id, JSON or dict) row whose JSON keeps a raw hash."""
    out = []
    for item_id, owner_id, data in rows:
        text = data if isinstance(data, str) else json.dumps(data or {})
        if RAW_HASH.search(text):
            out.append(("raw_hash", f"{what} of {item_id} (account {owner_id}) keeps a content sha256"))
    return out
_IN_CHUNK = 500
_TABLE = FingerprintKey.metadata.tables["fingerprint_keys"]


def _insert_ignoring_existing(session: Session, rows: list[dict[str, object]]) -> None:
    """Insert key rows; a row another transaction made meanwhile wins (its key is the account's)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        statement: Any = pg_insert(_TABLE).on_conflict_do_nothing(index_elements=["owner_id"])
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(_TABLE).on_conflict_do_nothing(index_elements=["owner_id"])
    else:  # pragma: no cover - the project runs on SQLite and PostgreSQL
        statement = insert(_TABLE)
    session.connection().execute(statement, rows)  # one statement, many parameter sets


def keys_for(
    session: Session, owner_ids: Iterable[str], *, now: datetime | None = None
) -> dict[str, bytes | None]:
    """owner -> fingerprint key (made now if the account has none; None once erasure destroyed it)."""
    wanted = sorted(set(owner_ids))
    found: dict[str, bytes | None] = {}
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start : start + _IN_CHUNK]
        found.update(
            session.execute(
                select(FingerprintKey.owner_id, FingerprintKey.key).where(FingerprintKey.owner_id.in_(chunk))
            )
            .tuples()
            .all()
        )
    missing = [owner for owner in wanted if owner not in found]
    if missing:
        at = now or utcnow()
        _insert_ignoring_existing(
            session, [{"owner_id": owner, "key": os.urandom(32), "created_at": at} for owner in missing]
        )
        for start in range(0, len(missing), _IN_CHUNK):
            chunk = missing[start : start + _IN_CHUNK]
            found.update(
                session.execute(
                    select(FingerprintKey.owner_id, FingerprintKey.key).where(
                        FingerprintKey.owner_id.in_(chunk)
                    )
                )
                .tuples()
                .all()
            )
    return found


def of(key: bytes | None, sha256: str | None) -> str | None:
    """The fingerprint of a hash under a key (None without either)."""
    if key is None or not sha256:
        return None
    return PREFIX + hmac.new(key, sha256.encode(), hashlib.sha256).hexdigest()


def fingerprints(session: Session, pairs: Sequence[tuple[str, str | None]]) -> list[str | None]:
    """The fingerprint of each (owner_id, sha256), in order; keys are loaded (or made) in bulk."""
    keys = keys_for(session, (owner for owner, sha in pairs if sha))
    return [of(keys.get(owner), sha) for owner, sha in pairs]


def fingerprint(session: Session, owner_id: str, sha256: str | None) -> str | None:
    """The fingerprint of one hash of one account's content."""
    return fingerprints(session, [(owner_id, sha256)])[0]


def destroy_on_erasure(session: Session, user_id: str, actor_id: str | None) -> None:
    """Erasure hook: wipe the account's key (keeping a keyless row, so none is ever made again)."""
    _ = actor_id
    now = utcnow()
    if session.get(FingerprintKey, user_id) is None:
        session.add(FingerprintKey(owner_id=user_id, key=None, created_at=now, destroyed_at=now))
    else:
        session.execute(
            update(FingerprintKey)
            .where(FingerprintKey.owner_id == user_id)
            .values(key=None, destroyed_at=now)
        )
    session.flush()
