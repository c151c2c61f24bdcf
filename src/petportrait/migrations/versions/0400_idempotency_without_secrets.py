"""idempotency: answers may be kept without their body (a secret shown once); lineage links (the ids a
stored answer, a message or a delivery names, so that it ends with them)

Stored answers from before are dropped: their fingerprints were bare SHA-256 of bodies that may hold a
password, and they named items without saying which.

Revision ID: 0400
Revises: 0370
Create Date: 2026-12-06 04:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0400"
down_revision = "0370"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM idempotency_keys")
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.add_column(sa.Column("answer_kept", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.create_table(
        "lineage_links",
        sa.Column("store", sa.String(length=64), primary_key=True),
        sa.Column("row_id", sa.String(length=32), primary_key=True),
        sa.Column("subject_id", sa.String(length=32), primary_key=True),
    )
    op.create_index("ix_lineage_links_subject_id", "lineage_links", ["subject_id"])


def downgrade() -> None:
    op.drop_index("ix_lineage_links_subject_id", table_name="lineage_links")
    op.drop_table("lineage_links")
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("answer_kept")
