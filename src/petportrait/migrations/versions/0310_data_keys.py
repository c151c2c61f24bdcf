"""data keys: the wrapped data key of every blob (crypto-shredding)

Revision ID: 0310
Revises: 0200
Create Date: 2026-12-02 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from petportrait.db import UTCDateTime

revision = "0310"
down_revision = "0200"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "data_keys",
        sa.Column("storage_key", sa.String(length=1024), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=True),
        sa.Column("wrapped_key", sa.LargeBinary(length=128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("storage_key", name=op.f("pk_data_keys")),
    )
    op.create_index("ix_data_keys_owner_id", "data_keys", ["owner_id"])


def downgrade() -> None:
    op.drop_index("ix_data_keys_owner_id", table_name="data_keys")
    op.drop_table("data_keys")
