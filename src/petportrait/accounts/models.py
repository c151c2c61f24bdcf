"""Accounts tables: people and their API and session tokens (sign-in attempts are counted in ratelimit)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from petportrait.db import Base, IdMixin


class Role(StrEnum):
    USER = "user"
    SUPPORT = "support"
    MARKETING = "marketing"
    TRUST_SAFETY = "trust_safety"
    ADMIN = "admin"


# The roles of staff; each sees a person's items only on a basis (a consent, a support case, a T&S case).
STAFF_ROLES = (Role.SUPPORT, Role.MARKETING, Role.TRUST_SAFETY, Role.ADMIN)


class User(IdMixin, Base):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32), default=Role.USER.value)
    display_name: Mapped[str | None] = mapped_column(String(100), default=None)
    created_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    # when the person showed they own the address (a verification or password-reset link); None until then
    email_verified_at: Mapped[datetime | None] = mapped_column(default=None)


class ApiToken(IdMixin, Base):
    """A bearer token or a web session; only the SHA-256 of the secret is kept."""

    __tablename__ = "api_tokens"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "api" or "session"
    name: Mapped[str] = mapped_column(String(100), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class EmailPurpose(StrEnum):
    VERIFY = "verify"
    RESET = "reset"


class EmailToken(IdMixin, Base):
    """A single-use link sent by email (verify the address, reset the password); only its SHA-256 is kept."""

    __tablename__ = "email_tokens"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(default=None)
