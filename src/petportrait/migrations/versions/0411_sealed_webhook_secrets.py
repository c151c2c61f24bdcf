"""webhook secrets are sealed under a data key of their endpoint (webhook_endpoints.sealed_secret)

Existing secrets are sealed here, under the settings' key-encryption key, after checking it against the
database's check value (retention.kek: a wrong key would seal them where the right one cannot open them);
then the plaintext column is dropped. The settings are those `migrate.upgrade` was given, else the
process's settings.

Revision ID: 0411
Revises: 0410
Create Date: 2026-12-06 04:30:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session, sessionmaker

revision = "0411"
down_revision = "0410"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, owner_id, secret FROM webhook_endpoints")).all()
    keks = _checked_keks(bind) if rows else ()  # before any change: a wrong key changes nothing
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.add_column(sa.Column("sealed_secret", sa.LargeBinary(length=256), nullable=True))
    if rows:
        _seal(bind, rows, keks)
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.drop_column("secret")
        batch.alter_column("sealed_secret", existing_type=sa.LargeBinary(length=256), nullable=False)


def _checked_keks(bind: sa.Connection) -> tuple[bytes, ...]:
    """The settings' key-encryption keys, after checking the current one against the database's."""
    from petportrait.retention.kek import verify_kek
    from petportrait.retention.keys import load_previous_kek, settings_keks
    from petportrait.settings import get_settings

    config = op.get_context().config
    settings = (config.attributes.get("settings") if config is not None else None) or get_settings()
    keks = settings_keks(settings)
    verify_kek(
        sessionmaker(bind=bind, join_transaction_mode="create_savepoint"),
        keks[0],
        load_previous_kek(settings),
    )
    return keks


def _seal(bind: sa.Connection, rows: Sequence[Any], keks: tuple[bytes, ...]) -> None:
    from petportrait.integrations.models import secret_key_name
    from petportrait.retention.keys import seal_with_new_key

    with Session(bind=bind, join_transaction_mode="create_savepoint") as session:
        for endpoint_id, owner_id, secret in rows:
            sealed = seal_with_new_key(session, keks, secret_key_name(owner_id, endpoint_id), secret.encode())
            session.execute(
                sa.text("UPDATE webhook_endpoints SET sealed_secret = :sealed WHERE id = :id"),
                {"sealed": sealed, "id": endpoint_id},
            )
        session.commit()


def downgrade() -> None:
    raise NotImplementedError("sealed webhook secrets are not unsealed by a downgrade")
