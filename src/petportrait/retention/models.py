"""Retention tables: audit log and head, tombstones (receipts), legal holds, sweep runs, data keys."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Float, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from petportrait.db import Base, IdMixin

GENESIS_HASH = "0" * 64


class AuditEntry(Base):
    """One entry of the append-only audit log; `hash` covers the entry and the previous entry's hash."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_owner_id_seq", "owner_id", "seq"),
        Index("ix_audit_log_subject", "subject_kind", "subject_id"),
    )

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime]
    action: Mapped[str] = mapped_column(String(64))
    actor_id: Mapped[str | None] = mapped_column(String(32), default=None)
    subject_kind: Mapped[str | None] = mapped_column(String(32), default=None)
    subject_id: Mapped[str | None] = mapped_column(String(64), default=None)
    owner_id: Mapped[str | None] = mapped_column(String(32), default=None)
    purpose: Mapped[str | None] = mapped_column(String(128), default=None)
    details: Mapped[str] = mapped_column(Text, default="{}")  # canonical JSON, hashed as stored
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHead(Base):
    """The single row that names the newest entry; appends lock it, so the chain stays a line."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class DeletionReason(StrEnum):
    EXPIRED = "expired"
    OWNER_DELETED = "owner_deleted"
    ACCOUNT_DELETED = "account_deleted"
    STAFF_DELETED = "staff_deleted"


class Tombstone(Base):
    """What is left of a deleted item, and the person's deletion receipt for it."""

    __tablename__ = "tombstones"
    __table_args__ = (
        Index("ix_tombstones_owner_id_purged_at", "owner_id", "purged_at"),
        Index("ix_tombstones_storage_key", "storage_key"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the deleted item's id
    kind: Mapped[str] = mapped_column(String(32))
    owner_id: Mapped[str] = mapped_column(String(32))
    # The pet the item was of (a model's, so that a render of an expired, swept model can retrain it).
    pet_id: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime | None] = mapped_column(default=None)  # uploaded/trained/rendered at
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    storage_key: Mapped[str | None] = mapped_column(String(512), default=None)
    # HMAC of the item's sha256 under the account's fingerprint key (retention.fingerprints), never the hash
    fingerprint: Mapped[str | None] = mapped_column(String(80), default=None)
    size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    reason: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[str | None] = mapped_column(String(32), default=None)
    purged_at: Mapped[datetime]


class HoldScope(StrEnum):
    ITEM = "item"
    ACCOUNT = "account"


class LegalHold(IdMixin, Base):
    """A legal hold: suspends deletion of one item or of everything an account holds, until it ends."""

    __tablename__ = "legal_holds"
    __table_args__ = (
        Index("ix_legal_holds_owner_id", "owner_id"),
        Index("ix_legal_holds_subject", "subject_kind", "subject_id"),
    )

    scope: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[str] = mapped_column(String(32))
    subject_kind: Mapped[str | None] = mapped_column(String(32), default=None)
    subject_id: Mapped[str | None] = mapped_column(String(32), default=None)
    reason: Mapped[str] = mapped_column(Text)
    placed_by: Mapped[str | None] = mapped_column(String(32), default=None)
    placed_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    released_at: Mapped[datetime | None] = mapped_column(default=None)
    released_by: Mapped[str | None] = mapped_column(String(32), default=None)


class SweepRun(IdMixin, Base):
    """One run of the sweeper: when, how long, how much it removed."""

    __tablename__ = "sweep_runs"
    __table_args__ = (Index("ix_sweep_runs_started_at", "started_at"),)

    holder: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    duration_seconds: Mapped[float] = mapped_column(Float)
    purged: Mapped[int] = mapped_column(Integer, default=0)
    orphans_removed: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)


class DataKey(Base):
    """The data key of one blob, wrapped by the key-encryption key; deleting the row shreds the blob."""

    __tablename__ = "data_keys"
    __table_args__ = (Index("ix_data_keys_owner_id", "owner_id"),)

    storage_key: Mapped[str] = mapped_column(String(1024), primary_key=True)
    owner_id: Mapped[str | None] = mapped_column(String(32), default=None)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary(128))
    created_at: Mapped[datetime]
    # The id (hex) of the KEK that wraps it (storage.crypto.kek_id; also inside wrapped_key): a rotation
    # re-wraps the rows whose id is not the new KEK's, so it can stop and resume anywhere.
    kek_id: Mapped[str | None] = mapped_column(String(16), default=None)


class KekRole(StrEnum):
    CURRENT = "current"  # the KEK of the settings: wraps new keys
    PREVIOUS = "previous"  # a rotation away from it has begun and not finished: still opens keys


class KekCheck(Base):
    """A key-encryption key this database has known, by its check value (HMAC of a fixed label under
    the KEK, never the KEK): start-up refuses a KEK whose check value is not the current one's.

    `role` is unique (one current KEK, at most one previous); a KEK a finished rotation moved away from
    keeps its row with no role and `retired_at` set.
    """

    __tablename__ = "kek_checks"

    kek_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    check_value: Mapped[str] = mapped_column(String(64))
    role: Mapped[str | None] = mapped_column(String(16), unique=True, default=None)
    created_at: Mapped[datetime]
    retired_at: Mapped[datetime | None] = mapped_column(default=None)


class FingerprintKey(Base):
    """An account's key for fingerprints: what outlives an item keeps HMAC(key, sha256), never the sha256.

    Made on first use; erasure wipes `key` (the row stays, keyless, so no fingerprint is ever made again
    for the account), which leaves every fingerprint of the account unlinkable to any content.
    """

    __tablename__ = "fingerprint_keys"

    owner_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[bytes | None] = mapped_column(LargeBinary(32), default=None)
    created_at: Mapped[datetime]
    destroyed_at: Mapped[datetime | None] = mapped_column(default=None)


class AuditText(Base):
    """Free text an audit entry refers to (a reply, an appeal, a decision's reasons): deletable.

    The entry stores only {"$text": id, "digest": sha256(id NUL text)}, so the chain stays verifiable
    when this row goes (with the item it is about, or with the account); the id salts the digest.
    """

    __tablename__ = "audit_texts"
    __table_args__ = (
        Index("ix_audit_texts_owner_id", "owner_id"),
        Index("ix_audit_texts_subject", "subject_kind", "subject_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[str | None] = mapped_column(String(32), default=None)
    subject_kind: Mapped[str | None] = mapped_column(String(32), default=None)
    subject_id: Mapped[str | None] = mapped_column(String(64), default=None)
    sha256: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class LineageLink(Base):
    """Lineage: a row of a store (a stored answer, a message, a delivery) names an item or a pet, and ends
    when it does (`petportrait.retention.lineage`)."""

    __tablename__ = "lineage_links"
    __table_args__ = (Index("ix_lineage_links_subject_id", "subject_id"),)

    store: Mapped[str] = mapped_column(String(64), primary_key=True)
    row_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(32), primary_key=True)
