"""photos: a per-photo switch for training with the photo's subject mask (the mask itself is never stored);
pet_models: the model's likeness scores

Revision ID: 0510
Revises: 0380
Create Date: 2026-12-06 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0510"
down_revision = "0380"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("photos") as batch:
        batch.add_column(sa.Column("masking", sa.Boolean(), nullable=False, server_default=sa.true()))
    with op.batch_alter_table("pet_models") as batch:
        batch.add_column(sa.Column("likeness", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pet_models") as batch:
        batch.drop_column("likeness")
    with op.batch_alter_table("photos") as batch:
        batch.drop_column("masking")
