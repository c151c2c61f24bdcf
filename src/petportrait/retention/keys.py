"""Data keys in the database: the KeyStore of the encrypted blob store, and crypto-shredding.

Every blob is sealed under a data key of its own (petportrait.storage.crypto); the key lives here, wrapped
by the key-encryption key (KEK) of the settings, in table `data_keys`. A key is made in a short
transaction of its own before its blob is written. Deleting an item calls `destroy_keys` in the
transaction that tombstones it: from that commit on, every copy of the blob anywhere (bucket versions,
replicas, backups of the blob store, a crashed worker's leftovers) is unreadable; the blob delete follows.

The KEK comes from `security.key_encryption_key` (required in production); elsewhere one is made once in
`data_dir/keys/kek.b64` (mode 0600), like the development signing keys. Backups of the database hold the
wrapped keys: they must not outlive the retention policy (see the README).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, Insert, bindparam, delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from petportrait.clock import utcnow
from petportrait.retention import secret_files
from petportrait.retention.models import DataKey
from petportrait.settings import Settings, decode_kek
from petportrait.storage.base import BlobStore
from petportrait.storage.crypto import (
    EncryptedBlobStore,
    open_value,
    seal_value,
    unwrap_with_any,
    wrap_key,
    wrapped_kek_id,
)

_IN_CHUNK = 500
_OWNER = re.compile(r"^[0-9a-f]{32}$")
_DATA_KEYS = DataKey.metadata.tables["data_keys"]


class KekNotConfigured(RuntimeError):
    """Production without security.key_encryption_key."""


def owner_of_key(storage_key: str) -> str | None:
    """The account a storage key names ('photos/<owner>/...', 'renders/<owner>/...'), if any."""
    parts = storage_key.split("/")
    if len(parts) >= 3 and _OWNER.match(parts[1]):
        return parts[1]
    return None


def kek_path(settings: Settings) -> Path:
    """Where the development key-encryption key is kept."""
    return (settings.data_dir / "keys" / "kek.b64").resolve()


def load_previous_kek(settings: Settings) -> bytes | None:
    """The previous key-encryption key, set only while a rotation is under way (retention.kek)."""
    previous = settings.security.previous_key_encryption_key
    return None if previous is None else decode_kek(previous, name="security.previous_key_encryption_key")


def settings_keks(settings: Settings) -> tuple[bytes, ...]:
    """The KEKs that open data keys: the current one first, then the previous one during a rotation."""
    previous = load_previous_kek(settings)
    return (load_kek(settings),) if previous is None else (load_kek(settings), previous)


def load_kek(settings: Settings) -> bytes:
    """The key-encryption key: from the settings, or (outside production) made once in the data folder."""
    configured = settings.security.key_encryption_key
    if configured:
        return decode_kek(configured)
    if settings.environment == "production":
        raise KekNotConfigured("security.key_encryption_key is required in production")
    return decode_kek(secret_files.read_or_make(kek_path(settings)))


def _key_row(storage_key: str, wrapped: bytes) -> Insert:
    """The insert of one data key row, naming its owner and the KEK that wraps it."""
    return insert(_DATA_KEYS).values(
        storage_key=storage_key,
        owner_id=owner_of_key(storage_key),
        wrapped_key=wrapped,
        created_at=utcnow(),
        kek_id=wrapped_kek_id(wrapped).hex(),
    )


class DatabaseKeyStore:
    """A KeyStore on table `data_keys`; each call is a short transaction of its own."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self.session_factory = session_factory
        self._engine: Engine | None = session_factory.kw.get("bind")
        self._get = select(_DATA_KEYS.c.wrapped_key).where(_DATA_KEYS.c.storage_key == bindparam("key"))

    def put_if_absent(self, storage_key: str, wrapped: bytes) -> bytes:
        """Store the wrapped key unless the storage key has one; returns the one stored (committed)."""
        for _ in range(3):
            with self.session_factory() as session:
                try:
                    session.execute(_key_row(storage_key, wrapped))
                    session.commit()
                    return wrapped
                except IntegrityError:
                    session.rollback()
                existing = session.scalar(
                    select(DataKey.wrapped_key).where(DataKey.storage_key == storage_key)
                )
                if existing is not None:
                    return bytes(existing)
            # destroyed between our insert and our read: try again
        raise RuntimeError(f"could not store a data key for {storage_key!r}")

    def get(self, storage_key: str) -> bytes | None:
        """The wrapped key of a storage key, or None (one indexed read on a pooled connection: every blob
        read asks, and a destroyed key must be seen at once, so nothing is cached)."""
        if self._engine is None:
            with self.session_factory() as session:
                found = session.execute(self._get, {"key": storage_key}).scalar()
        else:
            with self._engine.connect() as conn:
                found = conn.execute(self._get, {"key": storage_key}).scalar()
        return None if found is None else bytes(found)

    def destroy(self, storage_keys: Sequence[str]) -> int:
        """Destroy keys now, in a transaction of their own; returns how many there were."""
        with self.session_factory() as session:
            count = destroy_keys(session, storage_keys)
            session.commit()
        return count

    def stored(self, session: Session, storage_keys: Sequence[str]) -> set[str]:
        """Those of `storage_keys` that have a data key."""
        found: set[str] = set()
        for start in range(0, len(storage_keys), _IN_CHUNK):
            chunk = list(storage_keys[start : start + _IN_CHUNK])
            found.update(session.scalars(select(DataKey.storage_key).where(DataKey.storage_key.in_(chunk))))
        return found


def seal_with_new_key(session: Session, keks: Sequence[bytes], name: str, value: bytes) -> bytes:
    """Seal a small value (a secret) under a new data key of its own, stored wrapped under keks[0] in
    `data_keys` as `name` in the caller's transaction; `destroy_keys([name])` makes the sealed value
    unreadable for good."""
    data_key = AESGCM.generate_key(256)
    session.execute(_key_row(name, wrap_key(keks[0], data_key, name)))
    return seal_value(data_key, value, name)


def open_sealed(session: Session, keks: Sequence[bytes], name: str, sealed: bytes) -> bytes | None:
    """A value sealed by seal_with_new_key, or None when its data key was destroyed."""
    wrapped = session.scalar(select(_DATA_KEYS.c.wrapped_key).where(_DATA_KEYS.c.storage_key == name))
    if wrapped is None:
        return None
    return open_value(unwrap_with_any(keks, bytes(wrapped), name), sealed, name)


def destroy_keys(session: Session, storage_keys: Sequence[str | None]) -> int:
    """Delete the data keys of these storage keys in the caller's transaction (the one that tombstones
    the items); once it commits, the blobs cannot be decrypted anywhere. Returns how many were deleted."""
    keys = sorted({key for key in storage_keys if key})
    count = 0
    for start in range(0, len(keys), _IN_CHUNK):
        result = session.execute(
            delete(_DATA_KEYS).where(_DATA_KEYS.c.storage_key.in_(keys[start : start + _IN_CHUNK]))
        )
        count += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return count


def encrypted_store(
    settings: Settings, session_factory: sessionmaker[Session], inner: BlobStore
) -> EncryptedBlobStore:
    """`inner` with every blob sealed under its own data key, kept in the database under the settings' KEK."""
    if isinstance(inner, EncryptedBlobStore):
        return inner
    previous = load_previous_kek(settings)
    return EncryptedBlobStore(
        inner,
        DatabaseKeyStore(session_factory),
        load_kek(settings),
        previous_keks=() if previous is None else (previous,),
    )
