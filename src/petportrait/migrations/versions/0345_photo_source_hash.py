"""photos keep the SHA-256 of the bytes as uploaded, so a byte-identical duplicate is refused before it
is decoded

Revision ID: 0345
Revises: 0340
Create Date: 2026-12-02 03:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0345"
down_revision = "0340"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("photos") as batch:
        batch.add_column(sa.Column("source_sha256", sa.String(length=64), nullable=True))
        batch.create_index("ix_photos_pet_id_source_sha256", ["pet_id", "source_sha256"])


def downgrade() -> None:
    with op.batch_alter_table("photos") as batch:
        batch.drop_index("ix_photos_pet_id_source_sha256")
        batch.drop_column("source_sha256")
