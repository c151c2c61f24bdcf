"""fingerprints and audit texts: per-account fingerprint keys, the deletable free text of audit entries,
and tombstones keeping a fingerprint (HMAC under the account's key) instead of the item's sha256

Existing tombstones' hashes are turned into fingerprints (keys made here) and the sha256 column dropped.
Audit entries already written cannot be changed (the chain); `retention check` reports those (raw_hash).

Revision ID: 0360
Revises: 0340
Create Date: 2026-12-20 00:00:00
"""

from __future__ import annotations

import hashlib
import hmac
import os
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from petportrait.db import UTCDateTime

revision = "0360"
down_revision = "0345"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fingerprint_keys",
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.LargeBinary(length=32), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("destroyed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("owner_id", name=op.f("pk_fingerprint_keys")),
    )
    op.create_table(
        "audit_texts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=True),
        sa.Column("subject_kind", sa.String(length=32), nullable=True),
        sa.Column("subject_id", sa.String(length=64), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_texts")),
    )
    op.create_index("ix_audit_texts_owner_id", "audit_texts", ["owner_id"])
    op.create_index("ix_audit_texts_subject", "audit_texts", ["subject_kind", "subject_id"])
    with op.batch_alter_table("tombstones") as batch:
        batch.add_column(sa.Column("fingerprint", sa.String(length=80), nullable=True))

    bind = op.get_bind()
    now = datetime.now(UTC)
    erased = {row[0] for row in bind.execute(sa.text("SELECT id FROM users WHERE deleted_at IS NOT NULL"))}
    keys: dict[str, bytes] = {}
    rows = bind.execute(sa.text("SELECT id, owner_id, sha256 FROM tombstones WHERE sha256 IS NOT NULL")).all()
    for item_id, owner_id, sha in rows:
        if owner_id in erased:
            continue  # an erased account gets no key: its tombstones keep no fingerprint
        if owner_id not in keys:
            keys[owner_id] = os.urandom(32)
        fingerprint = "hmac-sha256:" + hmac.new(keys[owner_id], sha.encode(), hashlib.sha256).hexdigest()
        bind.execute(
            sa.text("UPDATE tombstones SET fingerprint = :f WHERE id = :id"),
            {"f": fingerprint, "id": item_id},
        )
    table = sa.table(
        "fingerprint_keys",
        sa.column("owner_id", sa.String),
        sa.column("key", sa.LargeBinary),
        sa.column("created_at", UTCDateTime()),
        sa.column("destroyed_at", UTCDateTime()),
    )
    values = [{"owner_id": o, "key": k, "created_at": now, "destroyed_at": None} for o, k in keys.items()]
    values += [{"owner_id": o, "key": None, "created_at": now, "destroyed_at": now} for o in sorted(erased)]
    if values:
        op.bulk_insert(table, values)
    with op.batch_alter_table("tombstones") as batch:
        batch.drop_column("sha256")


def downgrade() -> None:
    with op.batch_alter_table("tombstones") as batch:
        batch.add_column(sa.Column("sha256", sa.String(length=64), nullable=True))
        batch.drop_column("fingerprint")
    op.drop_index("ix_audit_texts_subject", table_name="audit_texts")
    op.drop_index("ix_audit_texts_owner_id", table_name="audit_texts")
    op.drop_table("audit_texts")
    op.drop_table("fingerprint_keys")
