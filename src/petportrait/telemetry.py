"""Logs and traces: JSON log lines with request and job ids, OpenTelemetry traces over OTLP when configured.

- Every log line may carry `request_id` (the HTTP request being answered, or the request that queued the job
  being run), `job_id`, and with tracing on `trace_id`/`span_id`. `configure_logging(fmt="json")` writes one
  JSON object a line (python-json-logger); "text" keeps the plain format.
- Tracing is on only when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
  is set (`configure_tracing`); the SDK is then imported, FastAPI, SQLAlchemy and httpx are instrumented, and
  jobs and periodic tasks get spans of their own. A job's span is a child of the request that queued it: the
  job row keeps the request id and the W3C `traceparent` (`job_origin`). Off, nothing of the SDK is imported
  and the job and periodic wrappers only set the log ids.
- Nothing personal goes into a log line or a span attribute: ids only (never emails, names, prompts or file
  names). Paths hold ids only; a request span drops the client's address and user agent.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from sqlalchemy.engine import Engine

REQUEST_ID: ContextVar[str | None] = ContextVar("petportrait_request_id", default=None)
JOB_ID: ContextVar[str | None] = ContextVar("petportrait_job_id", default=None)
REQUEST_ID_HEADER = "x-request-id"
OTLP_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
_REQUEST_ID_SHAPE = re.compile(r"[A-Za-z0-9._:-]{8,64}")

_provider: TracerProvider | None = None


def request_id_from(header: str | None) -> str:
    """A caller's X-Request-ID when it is a plain token (8 to 64 of A-Z a-z 0-9 . _ : -), else a new one."""
    if header and _REQUEST_ID_SHAPE.fullmatch(header):
        return header
    return uuid.uuid4().hex


# --- logs --------------------------------------------------------------------------------------------


class ContextIds(logging.Filter):
    """Adds request_id, job_id (and trace_id, span_id with tracing on) to every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        record.job_id = JOB_ID.get()
        if _provider is not None:
            from opentelemetry import trace

            span = trace.get_current_span().get_span_context()
            if span.is_valid:
                record.trace_id = format(span.trace_id, "032x")
                record.span_id = format(span.span_id, "016x")
        return True


def json_formatter() -> logging.Formatter:
    """One JSON object a line: time, level, logger, message, request_id, job_id (and trace ids)."""
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(
        JSON_FIELDS,
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        timestamp=False,
    )


def configure_logging(*, fmt: str = "text", level: str = "INFO", stream: Any = None) -> logging.Handler:
    """Send every logger's records through one handler on stderr (or `stream`) in the format asked for.

    Replaces the handler an earlier call installed; uvicorn's loggers go through it too (their own
    handlers are dropped), so a JSON deployment has no line in another format.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "petportrait", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.petportrait = True  # type: ignore[attr-defined]
    handler.addFilter(ContextIds())
    handler.setFormatter(json_formatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    return handler


# --- traces ------------------------------------------------------------------------------------------


def tracing_on() -> bool:
    """Whether spans are recorded in this process."""
    return _provider is not None


def configure_tracing(*, service_name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Export spans over OTLP/HTTP when an OTEL_EXPORTER_OTLP_*ENDPOINT variable is set; else stay off.

    The exporter reads the other standard variables itself (headers, timeout, certificates, protocol);
    `OTEL_SERVICE_NAME` overrides `service_name`.
    """
    env = os.environ if environ is None else environ
    if not any(env.get(name) for name in OTLP_VARIABLES):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or service_name})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    use_tracer_provider(provider)
    return True


def use_tracer_provider(provider: TracerProvider | None) -> None:
    """Record spans with `provider` from now on (httpx clients included), or stop with None."""
    global _provider
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    instrumentor = HTTPXClientInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    if _provider is not None:
        from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

        EngineTracer.remove_all_event_listeners()  # type: ignore[no-untyped-call]
    _provider = provider
    if provider is not None:
        instrumentor.instrument(tracer_provider=provider)


def _tracer() -> Any:
    assert _provider is not None
    return _provider.get_tracer("petportrait")


def instrument_app(app: Any) -> None:
    """Trace the app's requests (not /healthz, /metrics or static files), named by route template."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=_provider,
        excluded_urls="/healthz,/metrics,/static/",
        server_request_hook=_without_client,
        exclude_spans=["receive", "send"],
    )


# A client's address and user agent say who asked: kept out of spans (logs carry neither either).
_CLIENT_ATTRIBUTES = (
    "http.client_ip",
    "client.address",
    "client.port",
    "net.peer.ip",
    "net.peer.port",
    "http.user_agent",
    "user_agent.original",
    "network.peer.address",
    "network.peer.port",
)


def _without_client(span: Any, _scope: dict[str, Any]) -> None:
    attributes = getattr(span, "_attributes", None)
    if attributes is None or not span.is_recording():
        return
    for name in _CLIENT_ATTRIBUTES:
        attributes.pop(name, None)


def instrument_engine(engine: Engine) -> None:
    """Trace the engine's statements (their text with placeholders, never the values bound to them)."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import NoOpMeterProvider

    usage = NoOpMeterProvider().get_meter("petportrait").create_up_down_counter("db.client.connections.usage")
    EngineTracer(_tracer(), engine, usage)  # type: ignore[no-untyped-call]


def job_origin() -> dict[str, str] | None:
    """What a job keeps of the request that queues it: its request id and, with tracing on, traceparent."""
    origin: dict[str, str] = {}
    request_id = REQUEST_ID.get()
    if request_id:
        origin["request_id"] = request_id
    if _provider is not None:
        from opentelemetry.propagate import inject

        inject(origin)
    return origin or None


@contextmanager
def job_span(kind: str, *, job_id: str, attempt: int, origin: Mapping[str, str] | None) -> Iterator[None]:
    """Run a job with its ids in every log line and, with tracing on, in a span under the queuing request."""
    request_token = REQUEST_ID.set((origin or {}).get("request_id"))
    job_token = JOB_ID.set(job_id)
    try:
        if _provider is None:
            yield
            return
        from opentelemetry import trace
        from opentelemetry.propagate import extract

        parent = extract(dict(origin or {}))
        with _tracer().start_as_current_span(
            f"job {kind}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "petportrait.job.id": job_id,
                "petportrait.job.kind": kind,
                "petportrait.job.attempt": attempt,
            },
        ):
            yield
    finally:
        JOB_ID.reset(job_token)
        REQUEST_ID.reset(request_token)


@contextmanager
def periodic_span(name: str) -> Iterator[None]:
    """A span for one run of a periodic task (the sweeper, the reaper, ...) with tracing on."""
    if _provider is None:
        yield
        return
    with _tracer().start_as_current_span(f"periodic {name}", attributes={"petportrait.periodic.task": name}):
        yield
