"""verified addresses and password reset: users.email_verified_at (existing accounts count as verified),
the email_tokens table (single-use links, stored hashed); addresses
normalised (NFC, IDNA domain, lower case), reporting the accounts whose addresses collide once normalised

Revision ID: 0520
Revises: 0411
Create Date: 2026-12-06 04:45:00
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

from petportrait.accounts.addresses import normalise_or_none
from petportrait.db import UTCDateTime

revision = "0520"
down_revision = "0411"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("email_verified_at", UTCDateTime(), nullable=True))
    op.execute("UPDATE users SET email_verified_at = created_at WHERE deleted_at IS NULL")
    op.create_table(
        "email_tokens",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column(
            "user_id", sa.String(length=32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_email_tokens_user_id", "email_tokens", ["user_id"])
    normalise_addresses()


def normalise_addresses() -> list[list[str]]:
    """Rewrite each address in its normalised form; where two accounts would share one, leave both as they
    are and report their ids (never the addresses), for an administrator to resolve."""
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, email FROM users WHERE deleted_at IS NULL")).all()
    by_form: dict[str, list[tuple[str, str]]] = {}
    for user_id, email in rows:
        form = normalise_or_none(email) or email
        by_form.setdefault(form, []).append((user_id, email))
    collisions = [[uid for uid, _ in group] for group in by_form.values() if len(group) > 1]
    for form, group in by_form.items():
        if len(group) == 1 and group[0][1] != form:
            bind.execute(sa.text("UPDATE users SET email = :e WHERE id = :i"), {"e": form, "i": group[0][0]})
    for ids in collisions:
        log.warning(
            "accounts %s share one mailbox once their addresses are normalised; they are left as they were: "
            "merge or erase all but one",
            ", ".join(sorted(ids)),
        )
    return collisions


def downgrade() -> None:
    op.drop_index("ix_email_tokens_user_id", table_name="email_tokens")
    op.drop_table("email_tokens")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("email_verified_at")
