"""Accounts API: sign up, get a token, who am I, list and revoke tokens."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Response, status

from petportrait.accounts import service
from petportrait.accounts.schemas import AccountCreate, TokenInfo, TokenOut, TokenRequest, UserOut
from petportrait.errors import NotFound
from petportrait.paging import Page, PageQuery
from petportrait.web.deps import CurrentUser, PrincipalDep, SessionDep, SettingsDep

router = APIRouter(tags=["accounts"])


def user_out(user: object) -> UserOut:
    return UserOut.model_validate(user, from_attributes=True)


@router.post("/accounts", status_code=status.HTTP_201_CREATED, response_model=UserOut)
def sign_up(body: AccountCreate, session: SessionDep) -> UserOut:
    """Create an account (role `user`)."""
    user = service.create_user(
        session, email=body.email, password=body.password, display_name=body.display_name
    )
    return user_out(user)


@router.post("/auth/token", response_model=TokenOut)
def sign_in(body: TokenRequest, session: SessionDep, settings: SettingsDep) -> TokenOut:
    """Exchange email and password for a bearer token."""
    user = service.authenticate(
        session,
        email=body.email,
        password=body.password,
        max_failures=settings.security.signin_max_failures,
        window_seconds=settings.security.signin_window_seconds,
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
