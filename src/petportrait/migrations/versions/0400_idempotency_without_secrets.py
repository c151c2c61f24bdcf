"""idempotency: answers may be kept without their body (a secret shown once); the ids an answer names

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
        "idempotency_subjects",
        sa.Column(
            "record_id",
            sa.String(length=32),
            sa.ForeignKey("idempotency_keys.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("subject_id", sa.String(length=32), primary_key=True),
    )
    op.create_index("ix_idempotency_subjects_subject_id", "idempotency_subjects", ["subject_id"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_subjects_subject_id", table_name="idempotency_subjects")
    op.drop_table("idempotency_subjects")
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("answer_kept")
