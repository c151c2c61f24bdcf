"""The dependencies the web layer's pages use, gathered from where they live (http, accounts.deps)."""

from __future__ import annotations

from petportrait.accounts.deps import (
    CSRF_HEADER,
    SAFE_METHODS,
    SESSION_COOKIE,
    CurrentUser,
    Principal,
    PrincipalDep,
    csrf_token_for,
    get_current_user,
    get_principal,
    require_role,
)
from petportrait.http import (
    BlobsDep,
    ServicesDep,
    SessionDep,
    SettingsDep,
    bearer_value,
    get_services,
    get_session,
)
from petportrait.registry import Services

__all__ = [
    "CSRF_HEADER",
    "SAFE_METHODS",
    "SESSION_COOKIE",
    "BlobsDep",
    "CurrentUser",
    "Principal",
    "PrincipalDep",
    "Services",
    "ServicesDep",
    "SessionDep",
    "SettingsDep",
    "bearer_value",
    "csrf_token_for",
    "get_current_user",
    "get_principal",
    "get_services",
    "get_session",
    "require_role",
]
