"""Exception handlers: every error leaves as RFC 9457 problem+json with a stable `code`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from petportrait.errors import ProblemError
from petportrait.outages import Dependency, unavailable
from petportrait.web.error_pages import error_page_response, prefers_html

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"

_STATUS_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("not_authenticated", "Not authenticated"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("request_too_large", "Request too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    422: ("invalid_input", "Invalid input"),
    429: ("too_many_requests", "Too many requests"),
}

# A dependency that is away is a wait, not a failure: 503 (507 for a full disk) with Retry-After.
RETRY_AFTER_SECONDS = {
    Dependency.DATABASE: 5,
    Dependency.STORAGE: 5,
    Dependency.QUEUE: 5,
    Dependency.DISK: 60,
}
_KEPT = "nothing you sent was kept half-way."
_UNAVAILABLE_DETAIL = {
    Dependency.DATABASE: f"The database is briefly unavailable; {_KEPT} Try again.",
    Dependency.STORAGE: f"The file storage is briefly unavailable; {_KEPT} Try again.",
    Dependency.QUEUE: f"The job queue is briefly unavailable; {_KEPT} Try again.",
    Dependency.DISK: f"The service's disk is full; {_KEPT} Try again later.",
}


def outage_problem(dependency: Dependency) -> ProblemError:
    """503 `<dependency>_unavailable` (507 `insufficient_storage` for a full disk), with Retry-After."""
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS[dependency])}
    if dependency == Dependency.DISK:
        return ProblemError(
            _UNAVAILABLE_DETAIL[dependency],
            code="insufficient_storage",
            status=507,
            title="Insufficient storage",
            headers=headers,
        )
    return ProblemError(
        _UNAVAILABLE_DETAIL[dependency],
        code=f"{dependency.value}_unavailable",
        status=503,
        title="Service unavailable",
        headers=headers,
    )


def problem_response(problem: ProblemError, request: Request) -> Response:
    """A problem+json response for the error (a page in the layout for a browser that asks for HTML)."""
    if prefers_html(request):
        return error_page_response(request, problem)
    return JSONResponse(
        problem.to_problem(instance=request.url.path),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers or None,
    )


def _validation_problem(exc: RequestValidationError) -> ProblemError:
    errors: list[dict[str, Any]] = []
    malformed = False
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            malformed = True
        errors.append(
            {"loc": [str(p) for p in err.get("loc", ())], "msg": err.get("msg", ""), "type": err.get("type")}
        )
    if malformed:
        return ProblemError(
            "The request body is not valid JSON.",
            code="malformed_json",
            status=400,
            title="Malformed JSON",
            errors=errors,
        )
    first = errors[0] if errors else {"loc": [], "msg": "invalid"}
    where = ".".join(p for p in first["loc"] if p not in ("body", "query", "path"))
    detail = f"{where}: {first['msg']}" if where else str(first["msg"])
    return ProblemError(detail, code="validation_error", status=422, title="Invalid input", errors=errors)


def install_problem_handlers(app: FastAPI) -> None:
    """Register the handlers on the app."""

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> Response:
        return problem_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        return problem_response(_validation_problem(exc), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code, title = _STATUS_CODES.get(exc.status_code, ("http_error", "Error"))
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):
            code, title = "malformed_body", "Malformed body"
        detail = exc.detail if isinstance(exc.detail, str) else title
        headers = dict(exc.headers) if exc.headers else None
        problem = ProblemError(detail, code=code, status=exc.status_code, title=title, headers=headers)
        return problem_response(problem, request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        dependency = unavailable(exc)
        if dependency is not None:
            log.warning(
                "%s %s answered %s unavailable: %s",
                request.method,
                request.url.path,
                dependency,
                type(exc).__name__,
            )
            return problem_response(outage_problem(dependency), request)
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        problem = ProblemError(
            "Something went wrong on our side; nothing you sent was kept half-way. Try again.",
            code="internal_error",
            status=500,
            title="Internal error",
        )
        return problem_response(problem, request)
