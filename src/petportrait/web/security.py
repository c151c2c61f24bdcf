"""Security headers on every response (the maintained `secure` package) and the trusted-host check.

- Every response: `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`, `Referrer-Policy:
  same-origin`, `Cross-Origin-Opener-Policy: same-origin` and a strict Content-Security-Policy: scripts,
  styles and everything else from this origin only, no inline script, `frame-ancestors 'none'`.
- The browsable API docs (Swagger UI, from its CDN with an inline start-up script) get their own policy;
  they are off in production unless `security.api_docs` turns them on.
- HSTS only in production (the base URL is https there).
- The Host header must name one of `settings.trusted_hosts`, else 400 (Starlette's TrustedHostMiddleware).
"""

from __future__ import annotations

import json

from secure import (
    ContentSecurityPolicy,
    CrossOriginOpenerPolicy,
    ReferrerPolicy,
    Secure,
    StrictTransportSecurity,
    XContentTypeOptions,
    XFrameOptions,
)
from secure.middleware import SecureASGIMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from petportrait.settings import Settings

SWAGGER_CDN = "https://cdn.jsdelivr.net"

PAGE_CSP = (
    ContentSecurityPolicy()
    .default_src("'self'")
    .script_src("'self'")
    .style_src("'self'")
    .img_src("'self'", "data:", "blob:")
    .connect_src("'self'")
    .font_src("'self'")
    .object_src("'none'")
    .base_uri("'self'")
    .form_action("'self'")
    .frame_ancestors("'none'")
)

DOCS_CSP = (
    ContentSecurityPolicy()
    .default_src("'self'")
    .script_src("'self'", SWAGGER_CDN, "'unsafe-inline'")
    .style_src("'self'", SWAGGER_CDN)
    .img_src("'self'", "data:", "https://fastapi.tiangolo.com")
    .connect_src("'self'")
    .object_src("'none'")
    .base_uri("'self'")
    .frame_ancestors("'none'")
)


def _secure(settings: Settings, csp: ContentSecurityPolicy) -> Secure:
    hsts = None
    if settings.environment == "production":
        hsts = StrictTransportSecurity().max_age(63072000).include_subdomains()
    return Secure(
        csp=csp,
        hsts=hsts,
        xcto=XContentTypeOptions().nosniff(),
        xfo=XFrameOptions().value("DENY"),
        referrer=ReferrerPolicy().same_origin(),
        coop=CrossOriginOpenerPolicy().value("same-origin"),
    )


class SecurityHeaders:
    """`secure`'s ASGI middleware with the strict policy, and the docs' policy on the docs' paths."""

    def __init__(self, app: ASGIApp, *, settings: Settings, docs_paths: frozenset[str]) -> None:
        self.strict = SecureASGIMiddleware(app, secure=_secure(settings, PAGE_CSP))
        self.docs = SecureASGIMiddleware(app, secure=_secure(settings, DOCS_CSP))
        self.docs_paths = docs_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") in self.docs_paths:
            await self.docs(scope, receive, send)  # type: ignore[arg-type]
        else:
            await self.strict(scope, receive, send)  # type: ignore[arg-type]


class TrustedHosts:
    """Starlette's TrustedHostMiddleware, answering its refusal as problem+json `invalid_host`."""

    def __init__(self, app: ASGIApp, *, allowed_hosts: list[str]) -> None:
        self.app = app
        self.check = TrustedHostMiddleware(self._passed, allowed_hosts=allowed_hosts, www_redirect=False)

    async def _passed(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault("state", {})["_trusted_host"] = True
        await self.app(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def refuse_as_problem(message: Message) -> None:
            if scope.get("state", {}).get("_trusted_host"):
                await send(message)
            elif message["type"] == "http.response.start":
                body = _INVALID_HOST
                await send(
                    {
                        "type": "http.response.start",
                        "status": 400,
                        "headers": [
                            (b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
            # the refusal's own body is dropped: the problem above replaced it

        await self.check(scope, receive, refuse_as_problem)


_INVALID_HOST = json.dumps(
    {
        "type": "/problems/invalid_host",
        "title": "Bad request",
        "status": 400,
        "detail": "This server does not answer to the host named in the request's Host header.",
        "code": "invalid_host",
    }
).encode()
