"""Errors for browsers: the same problem that an API client gets as problem+json, as a page in the site's
layout when the request prefers HTML (a browser's `Accept: text/html,...`).

The choice is made from the `Accept` header alone (RFC 9110 quality values), so an API client that asks for
JSON, or for anything (`*/*`), keeps getting problem+json, and a person who follows a dead link or an old
address reads a sentence with a way on. When the database cannot be reached (the page shows who is signed
in), a plain page without the person's menu is sent instead.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import Request
from fastapi.responses import HTMLResponse

from petportrait.errors import ProblemError

log = logging.getLogger(__name__)

HTML_TYPES = ("text/html", "application/xhtml+xml")
JSON_TYPES = ("application/json", "application/problem+json")

# What a person reads for each status, whatever the detail the code gave (an API detail can be technical).
PAGE_TEXTS: dict[int, tuple[str, str]] = {
    400: ("Something in the request is not right", "The address or the form sent is not one we understand."),
    401: ("Please sign in", "This page is for signed-in people. Sign in and try again."),
    403: ("Not allowed", "You do not have access to this page."),
    404: (
        "Page not found",
        "There is nothing at this address. It may have been typed wrong, or what it showed was deleted.",
    ),
    405: ("Not found", "There is no page at this address."),
    410: (
        "This has been deleted",
        "What this address showed was deleted, as our data policy says it would be, and cannot come back.",
    ),
    413: ("Too large", "What was sent is larger than this server accepts."),
    429: ("Too many attempts", "Please wait a little, then try again."),
    500: (
        "Something went wrong on our side",
        "Nothing you sent was kept half-way. Please try again in a moment.",
    ),
}


_PHRASES = {status.phrase.lower() for status in HTTPStatus}


def _quality(part: str) -> tuple[str, float]:
    media, _, params = part.partition(";")
    q = 1.0
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip() == "q":
            try:
                q = float(value)
            except ValueError:
                q = 0.0
    return media.strip().lower(), q


def prefers_html(request: Request) -> bool:
    """Whether the client ranks HTML above JSON (a browser navigating); API clients and `*/*` get JSON."""
    accept = request.headers.get("accept", "")
    if not accept or request.headers.get("HX-Request") == "true":
        return False  # htmx swaps fragments and reads problem text itself
    html = json = 0.0
    for part in accept.split(","):
        media, q = _quality(part)
        if media in HTML_TYPES:
            html = max(html, q)
        elif media in JSON_TYPES:
            json = max(json, q)
    return html > 0 and html > json


def page_texts(status: int) -> tuple[str, str]:
    """The title and sentence shown for a status."""
    if status in PAGE_TEXTS:
        return PAGE_TEXTS[status]
    return PAGE_TEXTS[500] if status >= 500 else PAGE_TEXTS[400]


def error_page_response(request: Request, problem: ProblemError) -> HTMLResponse:
    """The problem as a page in the site's layout (or a plain page if the layout cannot be drawn)."""
    from petportrait.web.pages.common import error_page

    title, sentence = page_texts(problem.status)
    # A sentence that a service wrote for people (the 4xx problems) is more precise than the general one.
    detail = problem.detail if 400 <= problem.status < 500 and problem.status != 405 else sentence
    if detail.strip().lower() in _PHRASES:  # the bare status phrase of a routing miss ("Not Found")
        detail = sentence
    try:
        response = error_page(request, status=problem.status, title=title, detail=detail)
    except Exception:  # the database is down: still a page, without the person's menu
        log.warning("error page drawn without the layout for %s", request.url.path, exc_info=True)
        response = HTMLResponse(_plain_page(title, detail), status_code=problem.status)
    for name, value in (problem.headers or {}).items():
        response.headers[name] = value
    response.headers["Vary"] = "Accept"
    return response


def _plain_page(title: str, detail: str) -> str:
    from html import escape

    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)} · petportrait</title><link rel="stylesheet" href="/static/app.css"></head>'
        f'<body><main id="main" class="wrap"><h1>{escape(title)}</h1>'
        f'<p class="alert error" role="alert">{escape(detail)}</p>'
        '<p><a href="/">Home</a></p></main></body></html>'
    )
