"""models, renders and jobs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 23:36:28.493827
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from petportrait.db import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("last_run_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "jobs",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(length=128), nullable=True),
        sa.Column("heartbeat_at", UTCDateTime(), nullable=True),
        sa.Column("progress_step", sa.Integer(), nullable=False),
        sa.Column("progress_total", sa.Integer(), nullable=False),
        sa.Column("eta_seconds", sa.Float(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("waits_for", sa.String(length=32), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("enqueued_at", UTCDateTime(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_jobs_owner_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index("ix_jobs_state_heartbeat", ["state", "heartbeat_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_target_id"), ["target_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_waits_for"), ["waits_for"], unique=False)

    op.create_table(
        "pet_models",
        sa.Column("pet_id", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("base_model", sa.String(length=512), nullable=False),
        sa.Column("is_preview", sa.Boolean(), nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column("species", sa.String(length=16), nullable=False),
        sa.Column("photo_ids", sa.JSON(), nullable=False),
        sa.Column("retrained_from", sa.String(length=32), nullable=True),
        sa.Column("storage_key", sa.String(length=512), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("final_loss", sa.Double(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("trained_at", UTCDateTime(), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_pet_models_owner_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["pet_id"], ["pets.id"], name=op.f("fk_pet_models_pet_id_pets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pet_models")),
    )
    with op.batch_alter_table("pet_models", schema=None) as batch_op:
        batch_op.create_index("ix_pet_models_expires_at", ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_pet_models_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_pet_models_pet_id"), ["pet_id"], unique=False)

    op.create_table(
        "renders",
        sa.Column("model_id", sa.String(length=32), nullable=True),
        sa.Column("pet_id", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("style", sa.String(length=64), nullable=True),
        sa.Column("prompt", sa.Text(), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("is_preview", sa.Boolean(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("storage_key", sa.String(length=512), nullable=True),
        sa.Column("content_type", sa.String(length=64), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("rendered_at", UTCDateTime(), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"], ["pet_models.id"], name=op.f("fk_renders_model_id_pet_models"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_renders_owner_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["pet_id"], ["pets.id"], name=op.f("fk_renders_pet_id_pets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_renders")),
    )
    with op.batch_alter_table("renders", schema=None) as batch_op:
        batch_op.create_index("ix_renders_expires_at", ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_renders_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_renders_model_id"), ["model_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_renders_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_renders_pet_id"), ["pet_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("renders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_renders_pet_id"))
        batch_op.drop_index(batch_op.f("ix_renders_owner_id"))
        batch_op.drop_index(batch_op.f("ix_renders_model_id"))
        batch_op.drop_index(batch_op.f("ix_renders_job_id"))
        batch_op.drop_index("ix_renders_expires_at")

    op.drop_table("renders")
    with op.batch_alter_table("pet_models", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pet_models_pet_id"))
        batch_op.drop_index(batch_op.f("ix_pet_models_owner_id"))
        batch_op.drop_index("ix_pet_models_expires_at")

    op.drop_table("pet_models")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_waits_for"))
        batch_op.drop_index(batch_op.f("ix_jobs_target_id"))
        batch_op.drop_index("ix_jobs_state_heartbeat")
        batch_op.drop_index(batch_op.f("ix_jobs_owner_id"))

    op.drop_table("jobs")
    op.drop_table("leases")
