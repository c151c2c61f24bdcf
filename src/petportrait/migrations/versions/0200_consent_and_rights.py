"""consent and rights: marketing requests, consents, marketing copies, support cases, generations,
licences, content reports, trust & safety cases, their events and notices

Revision ID: 0200
Revises: 0100
Create Date: 2026-11-30 00:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from petportrait.db import UTCDateTime

revision = "0200"
down_revision = "0100"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consents",
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("request_item_id", sa.String(length=32), nullable=False),
        sa.Column("item_kind", sa.String(length=16), nullable=False),
        sa.Column("item_id", sa.String(length=32), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("notice_version", sa.String(length=32), nullable=False),
        sa.Column("method", sa.String(length=128), nullable=False),
        sa.Column("receipt", sa.JSON(), nullable=False),
        sa.Column("granted_at", UTCDateTime(), nullable=False),
        sa.Column("withdrawn_at", UTCDateTime(), nullable=True),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consents")),
        sa.UniqueConstraint("request_item_id", name=op.f("uq_consents_request_item_id")),
    )
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.create_index("ix_consents_item", ["item_kind", "item_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_consents_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "content_reports",
        sa.Column("licence_id", sa.String(length=32), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("contact", sa.String(length=320), nullable=True),
        sa.Column("reporter_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("case_id", sa.String(length=32), nullable=True),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_content_reports")),
    )
    with op.batch_alter_table("content_reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_content_reports_licence_id"), ["licence_id"], unique=False)

    op.create_table(
        "generations",
        sa.Column("render_id", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("model_id", sa.String(length=32), nullable=True),
        sa.Column("base_model", sa.String(length=512), nullable=True),
        sa.Column("is_preview", sa.Boolean(), nullable=False),
        sa.Column("style", sa.String(length=64), nullable=True),
        sa.Column("prompt", sa.Text(), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_generations")),
        sa.UniqueConstraint("render_id", name=op.f("uq_generations_render_id")),
    )
    with op.batch_alter_table("generations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_generations_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "marketing_copies",
        sa.Column("consent_id", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("source_kind", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.String(length=32), nullable=False),
        sa.Column("storage_key", sa.String(length=512), nullable=False),
        sa.Column("content_type", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("copied_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketing_copies")),
        sa.UniqueConstraint("consent_id", name=op.f("uq_marketing_copies_consent_id")),
        sa.UniqueConstraint("storage_key", name=op.f("uq_marketing_copies_storage_key")),
    )
    with op.batch_alter_table("marketing_copies", schema=None) as batch_op:
        batch_op.create_index("ix_marketing_copies_expires_at", ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_marketing_copies_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "safety_cases",
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("subject_kind", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("licence_id", sa.String(length=32), nullable=True),
        sa.Column("report_id", sa.String(length=32), nullable=True),
        sa.Column("opened_by", sa.String(length=32), nullable=False),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("policy_version", sa.String(length=32), nullable=False),
        sa.Column("policy_clause", sa.String(length=16), nullable=False),
        sa.Column("facts", sa.Text(), nullable=False),
        sa.Column("cure_deadline", UTCDateTime(), nullable=True),
        sa.Column("clearly_illegal", sa.Boolean(), nullable=False),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_safety_cases")),
    )
    with op.batch_alter_table("safety_cases", schema=None) as batch_op:
        batch_op.create_index("ix_safety_cases_deadline", ["state", "cure_deadline"], unique=False)
        batch_op.create_index(batch_op.f("ix_safety_cases_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index("ix_safety_cases_subject", ["subject_kind", "subject_id"], unique=False)

    op.create_table(
        "licences",
        sa.Column("render_id", sa.String(length=32), nullable=False),
        sa.Column("generation_id", sa.String(length=32), nullable=False),
        sa.Column("holder_id", sa.String(length=32), nullable=False),
        sa.Column("holder_pseudonym", sa.String(length=40), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("terms_version", sa.String(length=32), nullable=False),
        sa.Column("granted_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_by_case_id", sa.String(length=32), nullable=True),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["generation_id"],
            ["generations.id"],
            name=op.f("fk_licences_generation_id_generations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_licences")),
        sa.UniqueConstraint("render_id", name=op.f("uq_licences_render_id")),
    )
    with op.batch_alter_table("licences", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_licences_content_sha256"), ["content_sha256"], unique=False)
        batch_op.create_index(batch_op.f("ix_licences_holder_id"), ["holder_id"], unique=False)

    op.create_table(
        "marketing_requests",
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("requested_by", sa.String(length=32), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("notice_version", sa.String(length=32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_marketing_requests_owner_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketing_requests")),
    )
    with op.batch_alter_table("marketing_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_marketing_requests_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "safety_case_events",
        sa.Column("case_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=16), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["safety_cases.id"],
            name=op.f("fk_safety_case_events_case_id_safety_cases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_safety_case_events")),
    )
    with op.batch_alter_table("safety_case_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_safety_case_events_case_id"), ["case_id"], unique=False)

    op.create_table(
        "safety_notices",
        sa.Column("case_id", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=False),
        sa.Column("statement", sa.JSON(), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["safety_cases.id"],
            name=op.f("fk_safety_notices_case_id_safety_cases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_safety_notices")),
    )
    with op.batch_alter_table("safety_notices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_safety_notices_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_safety_notices_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "support_cases",
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("ends_at", UTCDateTime(), nullable=False),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_support_cases_owner_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_cases")),
    )
    with op.batch_alter_table("support_cases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_support_cases_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "marketing_request_items",
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("item_kind", sa.String(length=16), nullable=False),
        sa.Column("item_id", sa.String(length=32), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.Column("consent_id", sa.String(length=32), nullable=True),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["marketing_requests.id"],
            name=op.f("fk_marketing_request_items_request_id_marketing_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketing_request_items")),
    )
    with op.batch_alter_table("marketing_request_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_marketing_request_items_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_marketing_request_items_request_id"), ["request_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("marketing_request_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_marketing_request_items_request_id"))
        batch_op.drop_index(batch_op.f("ix_marketing_request_items_owner_id"))

    op.drop_table("marketing_request_items")
    with op.batch_alter_table("support_cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_support_cases_owner_id"))

    op.drop_table("support_cases")
    with op.batch_alter_table("safety_notices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_safety_notices_owner_id"))
        batch_op.drop_index(batch_op.f("ix_safety_notices_case_id"))

    op.drop_table("safety_notices")
    with op.batch_alter_table("safety_case_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_safety_case_events_case_id"))

    op.drop_table("safety_case_events")
    with op.batch_alter_table("marketing_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_marketing_requests_owner_id"))

    op.drop_table("marketing_requests")
    with op.batch_alter_table("licences", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_licences_holder_id"))
        batch_op.drop_index(batch_op.f("ix_licences_content_sha256"))

    op.drop_table("licences")
    with op.batch_alter_table("safety_cases", schema=None) as batch_op:
        batch_op.drop_index("ix_safety_cases_subject")
        batch_op.drop_index(batch_op.f("ix_safety_cases_owner_id"))
        batch_op.drop_index("ix_safety_cases_deadline")

    op.drop_table("safety_cases")
    with op.batch_alter_table("marketing_copies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_marketing_copies_owner_id"))
        batch_op.drop_index("ix_marketing_copies_expires_at")

    op.drop_table("marketing_copies")
    with op.batch_alter_table("generations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_generations_owner_id"))

    op.drop_table("generations")
    with op.batch_alter_table("content_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_content_reports_licence_id"))

    op.drop_table("content_reports")
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consents_owner_id"))
        batch_op.drop_index("ix_consents_item")

    op.drop_table("consents")
