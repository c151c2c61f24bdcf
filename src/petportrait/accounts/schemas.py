"""Accounts API shapes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from petportrait.text import SingleLine

EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{1,63}$"


class AccountCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(pattern=EMAIL_PATTERN, max_length=320)
    password: str = Field(min_length=10, max_length=256)
    display_name: SingleLine | None = Field(default=None, max_length=100)

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()


class SignUpOut(BaseModel):
    """The same answer whether or not the email already had an account."""

    email: str
    detail: str


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(max_length=256)
    new_password: str = Field(min_length=10, max_length=256)


class PasswordChanged(BaseModel):
    tokens_revoked: int
    detail: str


class Reauthentication(BaseModel):
    """The current password, asked again before an irreversible step."""

    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(max_length=256)


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=320)
    password: str = Field(max_length=256)
    name: SingleLine = Field(default="api", max_length=100)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    token_id: str
    expires_at: datetime


class TokenInfo(BaseModel):
    id: str
    kind: str
    name: str
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class UserOut(BaseModel):
    id: str
    email: str
    role: str
    display_name: str | None
    created_at: datetime
    email_verified_at: datetime | None = None


class LinkToken(BaseModel):
    """The secret of a link sent by email (the `token` query parameter of the link)."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=128)


class ResetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=320)


class ResetConfirm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=128)
    new_password: str = Field(min_length=10, max_length=256)


class Neutral(BaseModel):
    """An answer that says nothing about whether an account exists."""

    detail: str
