"""FastAPI dependencies for the signed-in person: the principal, the current user, role checks, CSRF."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from petportrait.accounts import service as accounts_service
from petportrait.accounts.models import ApiToken, Role, User
from petportrait.errors import Forbidden, NotFound, Unauthorized
from petportrait.http import SessionDep, SettingsDep, bearer_value

SESSION_COOKIE = "pp_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token_for(secret_key: str, token_id: str) -> str:
    """The CSRF token of a web session: an HMAC of the session token's id with the secret key."""
    return hmac.new(secret_key.encode(), f"csrf:{token_id}".encode(), hashlib.sha256).hexdigest()


@dataclass
class Principal:
    """The person a request acts for, and the token it came with."""

    user: User
    token: ApiToken


def _secret_from(request: Request) -> str | None:
    if request.headers.get("authorization"):
        value = bearer_value(request)
        if value is None:
            raise Unauthorized("Use 'Authorization: Bearer <token>'.", code="invalid_token")
        return value
    return request.cookies.get(SESSION_COOKIE)


def get_principal(request: Request, session: SessionDep, settings: SettingsDep) -> Principal:
    """The signed-in person; 401 with a stable code when the token is missing, wrong or expired."""
    header = request.headers.get("authorization")
    secret = _secret_from(request)
    if not secret:
        raise Unauthorized(
            "Sign in first: send a bearer token from POST /api/v1/auth/token.",
            code="not_authenticated",
            headers={"WWW-Authenticate": "Bearer"},
        )
    resolved = accounts_service.resolve_token(session, secret=secret)
    if resolved is None:
        raise Unauthorized(
            "The token is wrong, expired or revoked; sign in again.",
            code="invalid_token",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    user, token = resolved
    if header is None and request.method not in SAFE_METHODS:
        # Authenticated by the cookie: an unsafe request must prove it came from our own pages.
        expected = csrf_token_for(settings.security.secret_key, token.id)
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), expected.encode()):
            raise Forbidden(
                f"This request came with the session cookie but without a valid {CSRF_HEADER} header.",
                code="csrf_failed",
            )
    return Principal(user=user, token=token)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def get_current_user(principal: PrincipalDep) -> User:
    return principal.user


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_role(*roles: Role) -> object:
    """A dependency that lets only the named roles through (others get 404, as if nothing were there)."""

    allowed = {role.value for role in roles}

    def _check(user: CurrentUser) -> User:
        if user.role not in allowed:
            raise NotFound("Nothing here.")
        return user

    return Depends(_check)


AdminUser = Annotated[User, require_role(Role.ADMIN)]
"""A signed-in admin (403 for anyone else)."""
