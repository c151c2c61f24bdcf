"""transparency log over the audit chain: Merkle tree nodes, state, signed checkpoints, cosignatures

Revision ID: 0500
Revises: 0400
Create Date: 2026-12-06 04:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from petportrait.db import UTCDateTime

revision = "0500"
down_revision = "0400"
branch_labels = None
depends_on = None

_BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "tlog_nodes",
        sa.Column("level", sa.SmallInteger(), nullable=False, autoincrement=False),
        sa.Column("idx", _BIG, nullable=False, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_tlog_nodes")),
    )
    op.create_table(
        "tlog_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tlog_state")),
    )
    op.create_table(
        "tlog_checkpoints",
        sa.Column("size", _BIG, nullable=False, autoincrement=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_tlog_checkpoints")),
    )
    op.create_table(
        "tlog_cosignatures",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("witness_key", sa.String(length=512), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("signed_at", UTCDateTime(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tlog_cosignatures")),
        sa.UniqueConstraint("tree_size", "witness_key", name="uq_tlog_cosignatures_size_witness"),
    )


def downgrade() -> None:
    op.drop_table("tlog_cosignatures")
    op.drop_table("tlog_checkpoints")
    op.drop_table("tlog_state")
    op.drop_table("tlog_nodes")
