"""Tables of the webhooks domain: a person's endpoints and the deliveries of events to them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from petportrait.db import Base, IdMixin


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"  # retries ran out, or the endpoint was disabled or deleted


class WebhookEndpoint(IdMixin, Base):
    """Where a person's integration wants events; the secret signs every delivery (Standard Webhooks).

    The secret is kept sealed under a data key of the endpoint's own (retention.keys, named by
    `secret_key_name`), opened only to sign a delivery; deleting the endpoint destroys that key.
    """

    __tablename__ = "webhook_endpoints"

    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    sealed_secret: Mapped[bytes] = mapped_column(LargeBinary(256))
    created_at: Mapped[datetime]
    failing_since: Mapped[datetime | None] = mapped_column(default=None)
    disabled_at: Mapped[datetime | None] = mapped_column(default=None)
    disabled_reason: Mapped[str | None] = mapped_column(String(255), default=None)


def secret_key_name(owner_id: str, endpoint_id: str) -> str:
    """The name of the data key that seals an endpoint's secret (in `data_keys`, with the owner's id)."""
    return f"webhooks/{owner_id}/{endpoint_id}"


class WebhookDelivery(IdMixin, Base):
    """One event for one endpoint; `id` is the stable `webhook-id` of every attempt."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint_id_created_at", "endpoint_id", "created_at"),
    )

    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    owner_id: Mapped[str] = mapped_column(String(32), index=True)
    event: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    claimed_until: Mapped[datetime | None] = mapped_column(default=None)
    last_status: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
