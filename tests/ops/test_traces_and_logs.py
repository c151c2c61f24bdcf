"""One trace and one request id from an upload-and-train request through the training job it queued.

The SDK's in-memory exporter stands in for an OTLP collector; the JSON log lines are read back from the
handler `configure_logging` installs. No line and no span may name the person, the pet, the prompt or a file.
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from petportrait import telemetry
from petportrait.jobs import runner
from petportrait.services import build_consumer, build_services
from petportrait.web.app import create_app
from tests.conftest import make_settings, pet_photos, sign_up
from tests.jobs.stack import FAST_ML

EMAIL = "tracy.tracer@example.com"
PET_NAME = "Biscuitfluff"
PROMPT = "a watercolour of the dog on the moon with violet stars"
REQUEST_ID = "req-upload-and-train-0001"


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[tuple[InMemorySpanExporter, io.StringIO, Any]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.use_tracer_provider(provider)
    lines = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = telemetry.configure_logging(fmt="json", level="INFO", stream=lines)
    settings = make_settings(
        tmp_path,
        ml=FAST_ML,
        queue={"name": f"test-{secrets.token_hex(6)}", "embedded_consumer": False},
    )
    services = build_services(settings, migrate=True)
    try:
        yield exporter, lines, services
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        telemetry.use_tracer_provider(None)
        services.queue.flush()
        services.engine.dispose()


def _attribute_values(span: ReadableSpan) -> list[str]:
    values = [span.name]
    for value in (span.attributes or {}).values():
        values.extend(str(v) for v in (value if isinstance(value, tuple | list) else [value]))
    for event in span.events:
        values.extend(str(v) for v in (event.attributes or {}).values())
    return values


def test_one_trace_and_request_id_from_the_upload_request_through_the_training_job(traced: Any) -> None:
    exporter, lines, services = traced
    photos = pet_photos("dog")[:4]
    with TestClient(create_app(services=services), raise_server_exceptions=False) as client:
        headers = sign_up(client, EMAIL)
        pet = client.post("/api/v1/pets", json={"name": PET_NAME, "species": "dog"}, headers=headers).json()
        files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
        upload = client.post(f"/api/v1/pets/{pet['id']}/photos", files=files, headers=headers)
        assert upload.status_code in (200, 201, 207), upload.text
        trained = client.post(
            f"/api/v1/pets/{pet['id']}/models", headers={**headers, "X-Request-ID": REQUEST_ID}
        )
        assert trained.status_code == 202, trained.text
        assert trained.headers["x-request-id"] == REQUEST_ID
        job_id = trained.json()["job"]["id"]

        consumer = build_consumer(services, periodic=False)
        assert services.queue.dequeue(timeout=5) == job_id
        assert runner.run_job(consumer.ctx, job_id) == "succeeded"

        model_id = trained.json()["model"]["id"]
        rendered = client.post(
            f"/api/v1/models/{model_id}/renders",
            json={"prompt": PROMPT, "count": 1, "steps": 2, "seed": 1, "width": 64, "height": 64},
            headers=headers,
        )
        assert rendered.status_code == 202, rendered.text
        other = client.get("/api/v1/me", headers=headers)
        assert other.headers["x-request-id"] != REQUEST_ID  # a new id for each request without one
    # (the render job itself is not run: it would double the test's time for no new path)

    spans = exporter.get_finished_spans()
    request_span = next(
        s for s in spans if s.kind.name == "SERVER" and s.name.startswith("POST /api/v1/pets/{pet_id}/models")
    )
    job_span = next(s for s in spans if s.name == "job train")
    trace_id = request_span.context.trace_id
    assert job_span.context.trace_id == trace_id  # one trace: the request, then the job it queued
    by_id = {s.context.span_id: s for s in spans}
    parent = job_span.parent
    chain = []
    while parent is not None and parent.span_id in by_id:
        chain.append(by_id[parent.span_id])
        parent = by_id[parent.span_id].parent
    assert request_span in chain
    assert (job_span.attributes or {})["petportrait.job.id"] == job_id
    statements = [
        s
        for s in spans
        if s.context.trace_id == trace_id and s.parent and s.parent.span_id == job_span.context.span_id
    ]
    assert statements, "the job's database statements are spans of its trace"

    records = [json.loads(line) for line in lines.getvalue().splitlines() if line.strip()]
    access = [r for r in records if r.get("logger") == "petportrait.access"]
    assert any(r["request_id"] == REQUEST_ID and r["route"] == "/api/v1/pets/{pet_id}/models" for r in access)
    job_lines = [r for r in records if r.get("job_id") == job_id]
    assert job_lines and all(r["request_id"] == REQUEST_ID for r in job_lines)
    assert all(r["trace_id"] == format(trace_id, "032x") for r in job_lines)

    who = ("client.address", "http.client_ip", "net.peer.ip", "user_agent.original", "http.user_agent")
    assert not [(s.name, k) for s in spans for k in who if k in (s.attributes or {})]
    secrets_of_the_person = [EMAIL, EMAIL.split("@")[0], PET_NAME, PROMPT, *(p.name for p in photos)]
    texts = [lines.getvalue()] + [v for s in spans for v in _attribute_values(s)]
    for text in texts:
        for value in secrets_of_the_person:
            assert value not in text, f"{value!r} leaked into {text[:300]!r}"


def test_tracing_stays_off_and_unimported_without_an_otlp_endpoint(tmp_path: Path) -> None:
    # (redis-py imports the SDK's metrics package by itself when it is installed; the tracing is ours)
    assert telemetry.configure_tracing(service_name="petportrait-api", environ={}) is False
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update({"PETPORTRAIT__DATA_DIR": str(tmp_path), "PETPORTRAIT__ENVIRONMENT": "development"})
    env.pop("PETPORTRAIT__DATABASE__URL", None)
    code = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from petportrait.web.app import create_app\n"
        "with TestClient(create_app()) as c:\n"
        "    assert c.get('/healthz').status_code == 200\n"
        "print(sorted(m for m in sys.modules if m.startswith(("
        "'opentelemetry.sdk.trace', 'opentelemetry.instrumentation', 'opentelemetry.exporter'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
