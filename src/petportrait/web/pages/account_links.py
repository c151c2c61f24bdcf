"""Pages for the links sent by email: confirm an address (/verify) and reset a password (/password-reset).

A link opens a page with a button, and only the button's POST uses the link: mail scanners that fetch links
do not spend them. Answers do not tell whether an address has an account.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Response

from petportrait.accounts import service as accounts_service
from petportrait.errors import InvalidInput, TooManyRequests
from petportrait.ratelimit import client_address, limiter_of
from petportrait.web.pages.common import FormPage, Page, PageDep, PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)

MIN_PASSWORD = 10
RESET_SENT = (
    "If this email has an account, a link to choose a new password is on its way; it works once, for 30 "
    "minutes."
)


def _page(page: Page, title: str, *, status: int = 200, **values: object) -> Response:
    context: dict[str, object] = {"error": None, "message": None, "form": None, "token": "", "email": ""}
    context.update(values)
    return page.render("account_link.html", status=status, title=title, **context)


@router.get("/verify")
def verify_form(page: PageDep, token: str = "") -> Response:
    return _page(page, "Confirm your email address", form="verify", token=token[:128])


@router.post("/verify")
def verify(page: FormPage, token: Annotated[str, Form(max_length=128)] = "") -> Response:
    """Use the verification link: the address is confirmed."""
    try:
        accounts_service.verify_email(page.session, token=token)
    except InvalidInput as exc:
        return _page(page, "Confirm your email address", status=422, error=exc.detail)
    return _page(page, "Your address is confirmed", message="Thank you: your email address is confirmed.")


@router.get("/password-reset")
def reset_form(page: PageDep) -> Response:
    return _page(page, "Reset your password", form="ask")


@router.post("/password-reset")
def reset_ask(page: FormPage, email: Annotated[str, Form(max_length=320)] = "") -> Response:
    """Email a reset link when the address has an account; the same page either way."""
    try:
        accounts_service.request_password_reset(
            page.session,
            email=email,
            settings=page.settings,
            limiter=limiter_of(page.request),
            address=client_address(page.request),
        )
    except TooManyRequests as exc:
        response = _page(page, "Reset your password", status=429, form="ask", error=exc.detail, email=email)
        response.headers["Retry-After"] = exc.headers.get("Retry-After", "60")
        return response
    return _page(page, "Check your email", message=RESET_SENT)


@router.get("/password-reset/confirm")
def reset_choose_form(page: PageDep, token: str = "") -> Response:
    return _page(page, "Choose a new password", form="choose", token=token[:128])


@router.post("/password-reset/confirm")
def reset_choose(
    page: FormPage,
    token: Annotated[str, Form(max_length=128)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    password_again: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    """Set the new password: every session and token of the account is signed out."""
    title = "Choose a new password"
    if len(password) < MIN_PASSWORD:
        error = f"Choose a password of at least {MIN_PASSWORD} characters."
        return _page(page, title, status=422, form="choose", token=token, error=error)
    if password != password_again:
        return _page(page, title, status=422, form="choose", token=token, error="The two passwords differ.")
    try:
        accounts_service.reset_password(page.session, token=token, new_password=password)
    except InvalidInput as exc:
        return _page(page, title, status=422, error=exc.detail)
    return _page(
        page,
        "Your password is changed",
        message="Every session was signed out; sign in with the new password.",
    )
