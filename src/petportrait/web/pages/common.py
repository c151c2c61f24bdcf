"""What every page shares: templates, the signed-in person from the session cookie, CSRF, error pages.

Pages call the domain services directly and render Jinja2 templates. A page route is a `PageRoute`, which
turns the errors a person can cause into pages that read as sentences (never JSON, never a 500), and a
missing sign-in into a redirect to the sign-in page.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from petportrait.accounts import service as accounts_service
from petportrait.accounts.models import Role, User
from petportrait.clock import utcnow
from petportrait.errors import ProblemError
from petportrait.multipart import CappedUploadRoute
from petportrait.settings import Settings
from petportrait.web.deps import (
    SAFE_METHODS,
    SESSION_COOKIE,
    Principal,
    Services,
    ServicesDep,
    SessionDep,
    csrf_token_for,
)

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "templates"
ANON_COOKIE = "pp_csrf"
CSRF_FIELD = "csrf_token"

templates = Jinja2Templates(directory=str(TEMPLATES_DIR))


# -- template helpers -------------------------------------------------------------------------------------


def fmt_date(value: datetime | None) -> str:
    """A date people read: '30 December 2026'."""
    if value is None:
        return "—"
    return f"{value.day} {value.strftime('%B %Y')}"


def fmt_datetime(value: datetime | None) -> str:
    """A date and time in UTC: '30 December 2026, 14:05 UTC'."""
    if value is None:
        return "—"
    return f"{fmt_date(value)}, {value.strftime('%H:%M')} UTC"


def days_left(value: datetime | None) -> str:
    """How long until `value`, in words: 'in 29 days', 'tomorrow', 'today'."""
    if value is None:
        return ""
    seconds = (value - utcnow()).total_seconds()
    if seconds <= 0:
        return "now"
    if seconds < 86400:
        hours = max(1, math.ceil(seconds / 3600))
        return f"in {hours} hour{'s' if hours != 1 else ''}"
    days = math.ceil(seconds / 86400)
    return f"in {days} day{'s' if days != 1 else ''}"


def fmt_days(value: float) -> str:
    """A retention period in days: '30 days', '1 day', '0.5 days'."""
    number = f"{value:g}"
    return f"{number} day" if number == "1" else f"{number} days"


def fmt_size(value: int | None) -> str:
    """A byte count people read."""
    if value is None:
        return "—"
    size = float(value)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} bytes"


templates.env.filters["date"] = fmt_date
templates.env.filters["datetime"] = fmt_datetime
templates.env.filters["days_left"] = days_left
templates.env.filters["days"] = fmt_days
templates.env.filters["size"] = fmt_size


@lru_cache(maxsize=8)
def _preview_in_use(base_model: str | None, device: str | None) -> bool:
    from petportrait.portraits.service import base_model_choice
    from petportrait.settings import MLSettings

    settings = Settings.model_construct(ml=MLSettings(base_model=base_model, device=device))
    try:
        return base_model_choice(settings).is_preview
    except Exception:  # a device that is configured but missing: trainings will fail and say so
        return False


def preview_in_use(settings: Settings) -> bool:
    """Whether new trainings use the bundled preview model (no real model configured)."""
    return _preview_in_use(settings.ml.base_model, settings.ml.device)


# -- errors a page turns into sentences -------------------------------------------------------------------


class SignInRequired(Exception):
    """The page needs a signed-in person; the route sends them to the sign-in page."""


class CsrfFailed(Exception):
    """A form came without the token of this session (an old tab, or another site)."""


def _validation_sentence(exc: RequestValidationError) -> str:
    for err in exc.errors():
        where = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "form")]
        name = where[-1].replace("_", " ") if where else "the form"
        return f"Please check {name}: {err.get('msg', 'it is not valid')}."
    return "Please check the form: something in it is not valid."


def error_page(request: Request, *, status: int, title: str, detail: str) -> HTMLResponse:
    """A page that says what went wrong, in the site's layout."""
    services: Services = request.app.state.services
    with services.session_factory() as session:
        principal = _principal(request, session)
        page = Page(request=request, session=session, services=services, principal=principal)
        response = page.render("error.html", status=status, title=title, detail=detail)
        session.commit()
    return response


_TITLES = {
    400: "Something in the request is not right",
    401: "Please sign in",
    403: "Not allowed",
    404: "Not found",
    409: "That cannot be done right now",
    410: "This has been deleted",
    413: "Too large",
    422: "Please check what you entered",
    429: "Too many attempts",
}


class PageRoute(CappedUploadRoute):
    """A route whose errors become pages: sign-in redirects, CSRF refusals and problems as sentences."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except SignInRequired:
                target = request.url.path if request.method in SAFE_METHODS else "/pets"
                return RedirectResponse(f"/signin?next={quote(target)}", status_code=303)
            except CsrfFailed:
                return error_page(
                    request,
                    status=403,
                    title="This form has expired",
                    detail=(
                        "For your safety we could not accept this form: it was opened in an older session "
                        "or sent from another site. Go back, reload the page and try again."
                    ),
                )
            except RequestValidationError as exc:
                return error_page(request, status=422, title=_TITLES[422], detail=_validation_sentence(exc))
            except ProblemError as exc:
                title = _TITLES.get(exc.status, "Something went wrong")
                return error_page(request, status=exc.status, title=title, detail=exc.detail)

        return handler


# -- the person and the page ------------------------------------------------------------------------------


def _principal(request: Request, session: Session) -> Principal | None:
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        return None
    resolved = accounts_service.resolve_token(session, secret=secret)
    if resolved is None or resolved[1].kind != "session":
        return None
    return Principal(user=resolved[0], token=resolved[1])


def _anon_csrf(secret_key: str, value: str) -> str:
    return hmac.new(secret_key.encode(), f"anon:{value}".encode(), hashlib.sha256).hexdigest()


@dataclass
class Page:
    """One page request: database session, services, the person (if signed in) and their CSRF token."""

    request: Request
    session: Session
    services: Services
    principal: Principal | None
    new_anon_cookie: str | None = None
    cookies: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def user(self) -> User:
        """The signed-in person; pages that need one send everyone else to sign in."""
        if self.principal is None:
            raise SignInRequired()
        return self.principal.user

    @property
    def csrf(self) -> str:
        """The token every form of this page carries."""
        key = self.settings.security.secret_key
        if self.principal is not None:
            return csrf_token_for(key, self.principal.token.id)
        value = self.request.cookies.get(ANON_COOKIE)
        if not value:
            if self.new_anon_cookie is None:
                self.new_anon_cookie = secrets.token_urlsafe(24)
            value = self.new_anon_cookie
        return _anon_csrf(key, value)

    def has_role(self, *roles: Role) -> bool:
        return self.principal is not None and self.principal.user.role in {r.value for r in roles}

    def require_role(self, *roles: Role) -> User:
        """The signed-in person if they hold one of the roles; anyone else sees 'not found'."""
        from petportrait.errors import NotFound

        user = self.user
        if user.role not in {r.value for r in roles}:
            raise NotFound("There is no page here.")
        return user

    def context(self, **extra: Any) -> dict[str, Any]:
        user = self.principal.user if self.principal is not None else None
        return {
            "request": self.request,
            "user": user,
            "csrf_token": self.csrf,
            "csrf_field": CSRF_FIELD,
            "preview": preview_in_use(self.settings),
            "path": self.request.url.path,
            "retention": self.settings.retention,
            "is_staff": user is not None and user.role != Role.USER.value,
            **extra,
        }

    def render(self, template: str, *, status: int = 200, **extra: Any) -> HTMLResponse:
        response = templates.TemplateResponse(
            self.request, template, self.context(**extra), status_code=status
        )
        self.finish(response)
        return response

    def finish(self, response: Response) -> Response:
        """Commit, then set the cookies this page decided on (the anonymous CSRF cookie, a new session).

        The commit comes first because a dependency's own commit runs only after the response is sent: a
        browser that follows a redirect at once must find what the request wrote.
        """
        self.session.commit()
        secure = self.settings.security.cookie_secure
        if self.new_anon_cookie is not None:
            response.set_cookie(
                ANON_COOKIE, self.new_anon_cookie, httponly=True, samesite="lax", secure=secure, path="/"
            )
        for name, value, max_age in self.cookies:
            if max_age <= 0:
                response.delete_cookie(name, path="/", httponly=True, samesite="lax", secure=secure)
            else:
                response.set_cookie(
                    name, value, max_age=max_age, httponly=True, samesite="lax", secure=secure, path="/"
                )
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    def redirect(self, url: str) -> Response:
        return self.finish(RedirectResponse(url, status_code=303))

    @property
    def is_htmx(self) -> bool:
        return self.request.headers.get("HX-Request") == "true"


def get_page(request: Request, session: SessionDep, services: ServicesDep) -> Page:
    return Page(request=request, session=session, services=services, principal=_principal(request, session))


PageDep = Annotated[Page, Depends(get_page)]


async def check_csrf(request: Request, page: PageDep) -> Page:
    """Refuse an unsafe request whose form field (or X-CSRF-Token header) is not this session's token."""
    sent = request.headers.get("X-CSRF-Token")
    if not sent:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    key = page.settings.security.secret_key
    if page.principal is not None:
        expected = csrf_token_for(key, page.principal.token.id)
    else:
        anon = request.cookies.get(ANON_COOKIE)
        if not anon:
            raise CsrfFailed()
        expected = _anon_csrf(key, anon)
    if not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfFailed()
    return page


FormPage = Annotated[Page, Depends(check_csrf)]
