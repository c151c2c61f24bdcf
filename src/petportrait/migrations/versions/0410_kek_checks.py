"""the key-encryption key's check value (kek_checks), and which KEK wraps each data key (data_keys.kek_id)

Revision ID: 0410
Revises: 0500
Create Date: 2026-12-06 04:00:00
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0410"
down_revision = "0500"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kek_checks",
        sa.Column("kek_id", sa.String(length=16), nullable=False),
        sa.Column("check_value", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("kek_id", name=op.f("pk_kek_checks")),
        sa.UniqueConstraint("role", name=op.f("uq_kek_checks_role")),
    )
    with op.batch_alter_table("data_keys") as batch:
        batch.add_column(sa.Column("kek_id", sa.String(length=16), nullable=True))
    # The id is bytes 1..9 of every wrapped key (storage.crypto.wrap_key, format version 1).
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("UPDATE data_keys SET kek_id = encode(substring(wrapped_key from 2 for 8), 'hex')")
    else:
        op.execute("UPDATE data_keys SET kek_id = lower(hex(substr(wrapped_key, 2, 8)))")
    # A database with data keys already knows its KEK, by id: record it (its check value, which needs the
    # key, is filled in by the first start with that key; a start with another key is refused).
    known = bind.execute(
        sa.text("SELECT kek_id FROM data_keys GROUP BY kek_id ORDER BY count(*) DESC LIMIT 1")
    ).scalar()
    if known is not None:
        bind.execute(
            sa.text(
                "INSERT INTO kek_checks (kek_id, check_value, role, created_at) "
                "VALUES (:kek_id, '', 'current', :now)"
            ),
            {"kek_id": known, "now": datetime.now(UTC)},
        )


def downgrade() -> None:
    with op.batch_alter_table("data_keys") as batch:
        batch.drop_column("kek_id")
    op.drop_table("kek_checks")
