"""An in-flight Idempotency-Key is a lease renewed by the process answering it (issue 26): a key whose
process died is free within seconds, and a key whose request is still running stays held however long it
runs."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient

from petportrait import idempotency
from petportrait.web.app import Services, create_app
from tests.conftest import sign_up

LEASE = timedelta(seconds=1)


@pytest.fixture
def short_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(idempotency, "IN_FLIGHT_TIMEOUT", LEASE)
    monkeypatch.setattr(idempotency, "RENEW_EVERY", LEASE / 4)


def test_the_lease_is_seconds_long() -> None:
    assert timedelta(seconds=10) >= idempotency.IN_FLIGHT_TIMEOUT
    assert idempotency.RENEW_EVERY < idempotency.IN_FLIGHT_TIMEOUT / 2


def test_a_running_request_keeps_its_key_past_the_lease_and_its_answer_is_replayed(
    services: Services, short_lease: None
) -> None:
    app = create_app(services=services)
    calls: list[int] = []

    def slow_create() -> dict[str, int]:  # a create that outlasts three leases
        calls.append(1)
        time.sleep(3 * LEASE.total_seconds())
        return {"made": len(calls)}

    app.add_api_route("/api/v1/slow-creates", slow_create, methods=["POST"], status_code=201)
    with TestClient(app) as http:
        alice = sign_up(http, "lease@example.com")
        headers = {**alice, "Idempotency-Key": str(uuid.uuid4())}
        first: list[httpx.Response] = []
        runner = threading.Thread(
            target=lambda: first.append(http.post("/api/v1/slow-creates", headers=headers))
        )
        runner.start()
        time.sleep(2 * LEASE.total_seconds())  # past the first lease: only renewals hold the key now
        busy = http.post("/api/v1/slow-creates", headers=headers)
        runner.join()
        again = http.post("/api/v1/slow-creates", headers=headers)
    assert busy.status_code == 409 and busy.json()["code"] == "idempotency_key_in_flight"
    assert first[0].status_code == 201 and first[0].json() == {"made": 1}
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == {"made": 1} and calls == [1]
