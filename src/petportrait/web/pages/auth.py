"""The landing page (the data policy in plain words), sign up, sign in and sign out."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Response

from petportrait.accounts import service as accounts_service
from petportrait.accounts.models import Role, User
from petportrait.accounts.schemas import EMAIL_PATTERN
from petportrait.errors import InvalidInput, TooManyRequests, Unauthorized
from petportrait.ratelimit import account_key, client_address, limiter_of
from petportrait.web.deps import SESSION_COOKIE
from petportrait.web.pages.common import FormPage, Page, PageDep, PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)
MIN_PASSWORD = 10
SIGNED_UP = (
    "If this address can be used, your account is ready: sign in with your password, and follow the link we "
    "emailed to confirm the address (until then it gets no other email). If it already had an account, "
    "nothing changed: sign in, or reset the password."
)

WARN_TRIES = 2  # a failed sign-in says how many tries are left once this few remain


def _safe_next(value: str | None) -> str:
    """Only a path on this site; anything else goes to the pets page."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/pets"


def start_session(page: Page, user: User) -> None:
    """Issue a web session for the person and set its cookie on the response."""
    days = page.settings.security.session_days
    secret, _token = accounts_service.issue_token(
        page.session, user=user, kind="session", name="web", lifetime=timedelta(days=days)
    )
    page.cookies.append((SESSION_COOKIE, secret, int(days * 86400)))


def home_for(role: str) -> str:
    return "/pets" if role == Role.USER.value else "/staff"


@router.get("/")
def landing(page: PageDep) -> Response:
    """What the service does and its data policy, in plain words with the periods."""
    return page.render("landing.html", title="Portraits of your pet, and a data policy that is kept")


@router.get("/signup")
def signup_form(page: PageDep) -> Response:
    if page.principal is not None:
        return page.redirect(home_for(page.principal.user.role))
    return page.render("signup.html", title="Create an account", email="", errors={})


@router.post("/signup")
def signup(
    page: FormPage,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    password_again: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    """Create an account; the answer is the same page whether or not the address had one (the person
    then signs in; a new account is confirmed by the link emailed to it)."""
    email = email.strip()
    errors: dict[str, str] = {}
    if not re.match(EMAIL_PATTERN, email):
        errors["email"] = "Enter an email address, like name@example.com."
    if len(password) < MIN_PASSWORD:
        errors["password"] = f"Choose a password of at least {MIN_PASSWORD} characters."
    elif password != password_again:
        errors["password_again"] = "The two passwords are not the same."
    if not errors:
        limiter_of(page.request).take(
            ("signups_per_address", client_address(page.request)),
            detail="Too many sign-ups from this address.",
        )
        try:
            accounts_service.sign_up_quietly(
                page.session, email=email, password=password, settings=page.settings
            )
        except InvalidInput as exc:
            errors["email"] = exc.detail
        else:
            return page.render(
                "account_link.html",
                title="Check your email",
                error=None,
                form=None,
                token="",
                email="",
                message=SIGNED_UP,
            )
    return page.render("signup.html", status=422, title="Create an account", email=email, errors=errors)


@router.get("/signin")
def signin_form(page: PageDep, next: str | None = None) -> Response:
    if page.principal is not None:
        return page.redirect(_safe_next(next) if next else home_for(page.principal.user.role))
    return page.render(
        "signin.html", title="Sign in", email="", error=None, next=_safe_next(next) if next else ""
    )


@router.post("/signin")
def signin(
    page: FormPage,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Check email and password; a good pair starts a session."""
    try:
        user = accounts_service.authenticate(
            page.session,
            email=email,
            password=password,
            limiter=limiter_of(page.request),
            address=client_address(page.request),
        )
    except (Unauthorized, TooManyRequests) as exc:
        status = 429 if isinstance(exc, TooManyRequests) else 401
        left = None
        if status == 401:  # warn before the pause, while the person can still choose to reset instead
            key = f"{account_key(email)}|{client_address(page.request)}"
            left = limiter_of(page.request).remaining("signin_per_account_and_address", key)
        response = page.render(
            "signin.html",
            status=status,
            title="Sign in",
            email=email,
            error=exc.detail,
            tries_left=left if left is not None and left <= WARN_TRIES else None,
            paused=status == 429,
            next=_safe_next(next) if next else "",
        )
        if "Retry-After" in exc.headers:
            response.headers["Retry-After"] = exc.headers["Retry-After"]
        return response
    start_session(page, user)
    return page.redirect(_safe_next(next) if next else home_for(user.role))


@router.post("/signout")
def signout(page: FormPage) -> Response:
    """End this session: the token is revoked and the cookie removed."""
    if page.principal is not None:
        accounts_service.revoke_token(
            page.session, user=page.principal.user, token_id=page.principal.token.id
        )
    page.cookies.append((SESSION_COOKIE, "", 0))
    return page.redirect("/?signed_out=1")
