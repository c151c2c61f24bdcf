"""The FastAPI application: API under /api/v1, OpenAPI at /api/v1/openapi.json, /healthz."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from petportrait import __version__
from petportrait.accounts.views import router as accounts_router
from petportrait.consent.views import router as consent_router
from petportrait.integrations.views import router as webhooks_router
from petportrait.jobs.dbclock import SKEW_CHECK_SECONDS, ClockSkew
from petportrait.lifecycle.views import admin_router as lifecycle_admin_router
from petportrait.lifecycle.views import metrics_router as lifecycle_metrics_router
from petportrait.lifecycle.views import router as lifecycle_router
from petportrait.notifications.views import router as notifications_router
from petportrait.pets.views import router as pets_router
from petportrait.portraits.views import router as portraits_router
from petportrait.ratelimit import RateLimiter
from petportrait.registry import Services
from petportrait.rights.views import router as rights_router
from petportrait.services import build_consumer, build_services
from petportrait.settings import Settings, get_settings
from petportrait.telemetry import instrument_app
from petportrait.web.deps import ServicesDep
from petportrait.web.idempotency import Idempotency
from petportrait.web.jobs import router as jobs_router
from petportrait.web.limits import BodySizeLimit
from petportrait.web.pages import STATIC_DIR, page_routers
from petportrait.web.problems import install_problem_handlers
from petportrait.web.requestlog import RequestContext
from petportrait.web.security import SecurityHeaders, TrustedHosts
from petportrait.web.transparency import me_router as transparency_me_router
from petportrait.web.transparency import router as transparency_router
from petportrait.web.transparency import well_known_router as transparency_well_known_router

log = logging.getLogger(__name__)
API_PREFIX = "/api/v1"
DOCS_URL = f"{API_PREFIX}/docs"


def create_app(
    settings: Settings | None = None, *, services: Services | None = None, consumer: bool | None = None
) -> FastAPI:
    """Build the app for these settings (or for already-built services).

    With `consumer` (default: settings.queue.embedded_consumer) the app runs a job consumer in a thread
    while it serves, so one machine needs one command.
    """
    settings = services.settings if services is not None else (settings or get_settings())
    built = services or build_services(settings)
    run_consumer = settings.queue.embedded_consumer if consumer is None else consumer
    docs = settings.api_docs_enabled

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(skew.check, built.session_factory)  # logs loudly when off; never fails
        embedded = None
        if run_consumer:
            embedded = build_consumer(built)
            embedded.start()
        app.state.consumer = embedded
        try:
            yield
        finally:
            if embedded is not None:
                embedded.stop(hand_back=True, timeout=30)
            if services is None:
                built.engine.dispose()

    app = FastAPI(
        title="petportrait",
        version=__version__,
        summary="Pet portraits from a model trained on your own photos; a data policy the code enforces.",
        openapi_url=f"{API_PREFIX}/openapi.json" if docs else None,
        docs_url=DOCS_URL if docs else None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.services = built
    skew = ClockSkew(who=f"API process {os.getpid()}")
    app.state.clock_skew = skew
    app.state.limiter = RateLimiter(settings)
    install_problem_handlers(app)
    app.add_middleware(Idempotency)  # inside BodySizeLimit: bodies are bounded before they are read
    # Outermost last: security headers on every answer (refusals too), then the Host check, then the size.
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.security.max_request_bytes,
        max_parsed_bytes=settings.security.max_json_bytes,
    )
    app.add_middleware(TrustedHosts, allowed_hosts=settings.trusted_hosts)
    app.add_middleware(
        SecurityHeaders, settings=settings, docs_paths=frozenset({DOCS_URL, f"{DOCS_URL}/oauth2-redirect"})
    )
    app.add_middleware(RequestContext)  # outermost: a request id and an access line for every answer
    instrument_app(app)  # traces, only when OTLP export is configured

    api = APIRouter(prefix=API_PREFIX)
    api.include_router(accounts_router)
    api.include_router(pets_router)
    api.include_router(portraits_router)
    api.include_router(jobs_router)
    api.include_router(lifecycle_router)
    api.include_router(lifecycle_admin_router)
    api.include_router(consent_router)
    api.include_router(rights_router)
    api.include_router(notifications_router)
    api.include_router(webhooks_router)
    api.include_router(transparency_router)
    api.include_router(transparency_me_router)
    app.include_router(api)
    app.include_router(lifecycle_metrics_router)
    app.include_router(transparency_well_known_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for page_router in page_routers():
        app.include_router(page_router)

    @app.get("/healthz", tags=["ops"])
    def healthz(services: ServicesDep) -> JSONResponse:
        """Whether the database, the blob store and the queue answer (503 naming the one that does not),
        and how far this process's clock is from the database's (`clock`; a warning, not a failure)."""
        checks: dict[str, Any] = {}

        def database() -> None:
            with services.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        for name, check, backend in (
            ("database", database, services.engine.dialect.name),
            ("storage", services.blobs.check, services.blobs.name),
            ("queue", services.queue.check, services.queue.name.partition(":")[0]),
        ):
            try:
                check()
                checks[name] = {"ok": True, "backend": backend}
            except Exception as exc:
                checks[name] = {"ok": False, "backend": backend, "error": type(exc).__name__}
        down = [name for name, check in checks.items() if not check["ok"]]
        last = skew.last
        stale = last is None or time.monotonic() - last.measured_at >= SKEW_CHECK_SECONDS
        if checks["database"]["ok"] and stale:
            skew.check(services.session_factory)
        checks["clock"] = skew.status()
        body = {"status": "degraded" if down else "ok", "down": down, **checks}
        headers = {"Retry-After": "5"} if down else None
        return JSONResponse(body, status_code=503 if down else 200, headers=headers)

    return app
