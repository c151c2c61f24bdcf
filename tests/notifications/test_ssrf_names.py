"""The SSRF guard against host names, not only IP literals: a name that the machine's resolver turns into a
loopback or private address is refused at every delivery attempt, and nothing reaches a receiver behind it.

No DNS server can be run for the test, so the names are the ones this machine's own resolver answers: the
hosts file (`localhost`, the machine's own name) and the numeric forms that getaddrinfo accepts but an IP
parser does not (`2130706433`, `0x7f.1`, `10.1`, `192.168.1`), a known way around guards that look only at
literals."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from petportrait.integrations import service as webhooks
from petportrait.registry import emit
from petportrait.web.app import Services, create_app
from tests.conftest import sign_up
from tests.notifications.receivers import HookReceiver

NAMES = ["localhost", socket.gethostname(), "2130706433", "0x7f.1", "10.1", "192.168.1", "172.16.1"]


@pytest.fixture
def app(services: Services) -> Iterator[TestClient]:
    services.settings.webhooks.allow_private_targets = False
    with TestClient(create_app(services=services), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize("name", NAMES)
def test_a_name_resolving_to_an_internal_address_is_refused(services: Services, name: str) -> None:
    addresses = {str(info[4][0]) for info in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)}
    assert addresses, name  # the resolver does answer: the guard, not a lookup failure, refuses
    with pytest.raises(webhooks.TargetRefused, match="non-public address"):
        webhooks.resolve_target(f"http://{name}/hook", settings=services.settings)


def test_a_name_for_a_public_address_passes_the_guard(services: Services) -> None:
    host, port, addresses = webhooks.resolve_target("http://8.8.8.8:8443/x", settings=services.settings)
    assert (host, port, addresses) == ("8.8.8.8", 8443, ["8.8.8.8"])


def test_a_webhook_registered_by_a_loopback_name_delivers_nothing_to_the_receiver_behind_it(
    services: Services, app: TestClient
) -> None:
    alice = sign_up(app, "alice@example.com")
    with HookReceiver() as hooks:
        url = hooks.url().replace("127.0.0.1", "localhost")
        made = app.post("/api/v1/webhooks", json={"url": url, "events": ["render.ready"]}, headers=alice)
        assert made.status_code == 201, made.text  # a name is checked when it is used, as it may change
        owner = app.get("/api/v1/me", headers=alice).json()["id"]
        with services.session_factory() as session:
            emit(session, "render.ready", owner_id=owner, render_id="r1", model_id="m1")
            session.commit()
        webhooks.deliver_due(services.session_factory, services.settings, worker_id="w")
        tested = app.post(f"/api/v1/webhooks/{made.json()['id']}/test", headers=alice).json()
        assert hooks.received == []
    deliveries = f"/api/v1/webhooks/{made.json()['id']}/deliveries"
    deadline = time.monotonic() + 30  # the test button answers at once; its delivery runs in the pool
    while True:
        listed = app.get(deliveries, headers=alice).json()["items"]
        test_run = next(d for d in listed if d["id"] == tested["id"])
        if test_run["state"] != "pending" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert test_run["state"] == "failed", test_run
    assert listed and all("non-public address" in (d["last_error"] or "") for d in listed), listed
