"""Errors that leave the API as RFC 9457 problem+json, each with a stable `code`."""

from __future__ import annotations

from typing import Any


class ProblemError(Exception):
    """An error a client caused or must know about; rendered as problem+json.

    `code` is stable and machine-readable; `detail` is for a person to read.
    """

    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        status: int | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if title is not None:
            self.title = title
        self.headers = headers or {}
        self.extra = extra

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        """The problem+json body."""
        body: dict[str, Any] = {
            "type": f"/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class NotFound(ProblemError):
    status = 404
    code = "not_found"
    title = "Not found"


class Gone(ProblemError):
    status = 410
    code = "expired"
    title = "Gone"


class Conflict(ProblemError):
    status = 409
    code = "conflict"
    title = "Conflict"


class Unauthorized(ProblemError):
    status = 401
    code = "not_authenticated"
    title = "Not authenticated"


class Forbidden(ProblemError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class InvalidInput(ProblemError):
    status = 422
    code = "invalid_input"
    title = "Invalid input"


class TooManyRequests(ProblemError):
    status = 429
    code = "too_many_requests"
    title = "Too many requests"
