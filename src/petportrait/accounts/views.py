"""Accounts API: sign up, get a token, who am I, change the password, list and revoke tokens."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request, Response, status

from petportrait.accounts import service
from petportrait.accounts.deps import CurrentUser, PrincipalDep
from petportrait.accounts.schemas import (
    AccountCreate,
    LinkToken,
    Neutral,
    PasswordChange,
    PasswordChanged,
    ResetConfirm,
    ResetRequest,
    SignUpOut,
    TokenInfo,
    TokenOut,
    TokenRequest,
    UserOut,
)
from petportrait.errors import NotFound
from petportrait.http import PageQuery, SessionDep, SettingsDep
from petportrait.paging import Page
from petportrait.ratelimit import LimiterDep, client_address

router = APIRouter(tags=["accounts"])

TOO_MANY: dict[int | str, dict[str, Any]] = {
    429: {"description": "Too many attempts: wait for Retry-After seconds"}
}
SIGNED_UP = (
    "If this email can be used, its account is ready: sign in with POST /api/v1/auth/token, and follow the "
    "link we emailed to verify the address (until then it gets no other email). If the email already had an "
    "account, nothing changed; sign in with its password."
)


def user_out(user: object) -> UserOut:
    return UserOut.model_validate(user, from_attributes=True)


@router.post(
    "/accounts", status_code=status.HTTP_202_ACCEPTED, response_model=SignUpOut, responses={**TOO_MANY}
)
def sign_up(
    body: AccountCreate, request: Request, session: SessionDep, settings: SettingsDep, limiter: LimiterDep
) -> SignUpOut:
    """Create an account (role `user`). The answer is the same whether or not the email had one."""
    limiter.take(
        ("signups_per_address", client_address(request)), detail="Too many sign-ups from this address."
    )
    service.sign_up_quietly(
        session,
        email=body.email,
        password=body.password,
        display_name=body.display_name,
        settings=settings,
    )
    return SignUpOut(email=body.email, detail=SIGNED_UP)


@router.post("/auth/token", response_model=TokenOut, responses={401: {"description": "Wrong"}, **TOO_MANY})
def sign_in(
    body: TokenRequest, request: Request, session: SessionDep, settings: SettingsDep, limiter: LimiterDep
) -> TokenOut:
    """Exchange email and password for a bearer token (rate-limited per account and per address)."""
    user = service.authenticate(
        session, email=body.email, password=body.password, limiter=limiter, address=client_address(request)
    )
    secret, token = service.issue_token(
        session, user=user, kind="api", name=body.name, lifetime=timedelta(days=settings.security.token_days)
    )
    return TokenOut(access_token=secret, token_id=token.id, expires_at=token.expires_at)


@router.delete("/auth/token", status_code=status.HTTP_204_NO_CONTENT)
def sign_out(principal: PrincipalDep, session: SessionDep) -> Response:
    """Revoke the token this request was made with."""
    service.revoke_token(session, user=principal.user, token_id=principal.token.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", response_model=UserOut)
def me(user: CurrentUser) -> UserOut:
    """The signed-in account."""
    return user_out(user)


@router.post(
    "/me/password",
    response_model=PasswordChanged,
    responses={403: {"description": "The current password is missing or wrong"}, **TOO_MANY},
)
def change_password(
    body: PasswordChange, request: Request, principal: PrincipalDep, session: SessionDep, limiter: LimiterDep
) -> PasswordChanged:
    """Change the password (with the current one); every other token and session is revoked."""
    service.reauthenticate(
        principal.user, body.current_password, limiter=limiter, address=client_address(request)
    )
    revoked = service.change_password(
        session, user=principal.user, new_password=body.new_password, keep_token_id=principal.token.id
    )
    return PasswordChanged(
        tokens_revoked=revoked,
        detail=f"Password changed; {revoked} other token(s) and session(s) were signed out.",
    )


@router.get("/me/tokens", response_model=Page[TokenInfo])
def my_tokens(user: CurrentUser, session: SessionDep, page: PageQuery) -> Page[TokenInfo]:
    """The account's tokens and sessions (never their secrets), newest first, paged."""
    tokens, cursor = service.page_tokens(session, user=user, page=page)
    return Page(items=[TokenInfo.model_validate(t, from_attributes=True) for t in tokens], next_cursor=cursor)


@router.delete("/me/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke(token_id: str, user: CurrentUser, session: SessionDep) -> Response:
    """Revoke one of the account's tokens."""
    if not service.revoke_token(session, user=user, token_id=token_id):
        raise NotFound("No such token.")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


RESET_ASKED = (
    "If this email has an account, a link to choose a new password is on its way; it works once, for "
    "30 minutes."
)


@router.post("/accounts/verify", response_model=UserOut, responses={422: {"description": "Bad link"}})
def verify(body: LinkToken, session: SessionDep) -> UserOut:
    """Follow the verification link of a sign-up (single use): the address is verified."""
    return user_out(service.verify_email(session, token=body.token))


@router.post("/me/verification", status_code=status.HTTP_202_ACCEPTED, response_model=Neutral)
def resend(user: CurrentUser, session: SessionDep, settings: SettingsDep, limiter: LimiterDep) -> Neutral:
    """Email a new verification link (earlier ones stop working); rate-limited."""
    sent = service.resend_verification(session, user=user, settings=settings, limiter=limiter)
    return Neutral(detail="A new link is on its way." if sent else "This address is verified already.")


@router.post(
    "/auth/password-reset",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Neutral,
    responses={**TOO_MANY},
)
def ask_reset(
    body: ResetRequest, request: Request, session: SessionDep, settings: SettingsDep, limiter: LimiterDep
) -> Neutral:
    """Email a password-reset link; the same answer whether or not the email has an account."""
    service.request_password_reset(
        session, email=body.email, settings=settings, limiter=limiter, address=client_address(request)
    )
    return Neutral(detail=RESET_ASKED)


@router.post(
    "/auth/password-reset/confirm", response_model=Neutral, responses={422: {"description": "Bad link"}}
)
def confirm_reset(body: ResetConfirm, session: SessionDep) -> Neutral:
    """Choose a new password with the link's token: every session and token of the account is signed out."""
    service.reset_password(session, token=body.token, new_password=body.new_password)
    return Neutral(detail="Password changed; every session and token was signed out. Sign in again.")
