"""Lifecycle API shapes: deletion receipts, account erasure, legal holds."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class DeletionOut(BaseModel):
    """A deletion receipt: what was deleted, why, and when."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    reason: str
    created_at: datetime | None = Field(description="When the item was uploaded, trained or rendered")
    expires_at: datetime | None
    purged_at: datetime = Field(description="When its bytes and record were deleted")
    fingerprint: str | None = Field(
        description="HMAC-SHA256 of the item's sha256 under your account's fingerprint key (never the hash "
        "itself); it cannot be linked to any content once the account is erased"
    )
    size: int | None
    audit_receipt: str | None = Field(
        default=None,
        description="Where to fetch a receipt anyone can check for this deletion's audit entry: the entry, "
        "its inclusion proof and the transparency log's signed checkpoint (`petportrait verify-receipt`)",
    )


class ErasureOut(BaseModel):
    """What deleting the account did now, and what the next sweep removes."""

    user_id: str
    requested_at: datetime
    tokens_revoked: int
    jobs_cancelled: int
    items_pending: dict[str, int]
    items_held: int
    completes_within_seconds: float
    detail: str
    log_receipt: dict[str, Any] | None = Field(
        default=None,
        description="A receipt of the transparency log for the erasure's audit entry, that anyone can check "
        "offline (`petportrait verify-receipt`): keep it, the account cannot fetch it again",
    )


class HoldCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: Literal["item", "account"]
    reason: str = Field(min_length=1, max_length=2000)
    ends_at: datetime | None = Field(default=None, description="required; at most one year from now")
    kind: str | None = Field(default=None, description="photo, model or render (scope item)")
    item_id: str | None = Field(default=None, max_length=32)
    user_id: str | None = Field(default=None, max_length=32, description="the account (scope account)")


class HoldRenew(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ends_at: datetime | None = Field(default=None, description="the new end; at most one year from now")
    reason: str = Field(
        default="", max_length=2000, description="why the data must still be kept: a new reason"
    )
    note: str = Field(default="", max_length=2000)


class HoldRelease(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(default="", max_length=2000)


class HoldOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    scope: str
    owner_id: str
    subject_kind: str | None
    subject_id: str | None
    reason: str
    placed_by: str | None
    placed_at: datetime
    ends_at: datetime
    released_at: datetime | None
    held_days: float = Field(
        default=0.0, description="how long it has held the data in all, renewals included"
    )
    released_by: str | None
    active: bool
