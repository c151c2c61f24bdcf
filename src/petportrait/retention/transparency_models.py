"""Transparency-log tables: the Merkle tree over the audit chain, its signed checkpoints and cosignatures.

None holds personal data: the tree keeps hashes of audit entries (each entry's chain hash is a leaf), the
checkpoints their roots, the cosignatures witnesses' signatures over them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, LargeBinary, SmallInteger, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from petportrait.db import Base

_BIG = BigInteger().with_variant(Integer, "sqlite")


class TlogNode(Base):
    """The hash of one perfect subtree: leaves [idx << level, (idx + 1) << level); level 0 are leaves."""

    __tablename__ = "tlog_nodes"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(_BIG, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class TlogState(Base):
    """The single row saying how many audit entries the tree holds; integration locks it."""

    __tablename__ = "tlog_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)


class TlogCheckpoint(Base):
    """A signed checkpoint (C2SP signed note) of the tree at one size."""

    __tablename__ = "tlog_checkpoints"

    size: Mapped[int] = mapped_column(_BIG, primary_key=True, autoincrement=False)
    root: Mapped[str] = mapped_column(String(64))  # hex
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class TlogCosignature(Base):
    """A witness's cosignature (C2SP tlog-cosignature) on one checkpoint, as received and checked."""

    __tablename__ = "tlog_cosignatures"
    __table_args__ = (UniqueConstraint("tree_size", "witness_key", name="uq_tlog_cosignatures_size_witness"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tree_size: Mapped[int] = mapped_column(BigInteger)
    witness_key: Mapped[str] = mapped_column(String(512))  # the witness's verifier key
    line: Mapped[str] = mapped_column(Text)
    signed_at: Mapped[datetime]
    received_at: Mapped[datetime]
