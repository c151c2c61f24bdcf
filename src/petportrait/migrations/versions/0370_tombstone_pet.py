"""tombstones name the pet an item was of, so that a render of an expired, swept model retrains it

Revision ID: 0370
Revises: 0360
Create Date: 2026-12-02 04:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0370"
down_revision = "0360"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tombstones") as batch:
        batch.add_column(sa.Column("pet_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tombstones") as batch:
        batch.drop_column("pet_id")
