"""Delivery under faults: a receiver that fails, private targets, redirects, claims that expire, the file
outbox and its retention, preferences, and what staff see."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select
from standardwebhooks import Webhook

from petportrait.clock import Clock
from petportrait.integrations import service as webhooks
from petportrait.integrations.models import WebhookEndpoint
from petportrait.notifications import service as notifications
from petportrait.notifications.models import OutboxMessage
from petportrait.registry import emit
from petportrait.web.app import Services, create_app
from tests.conftest import TEST_KEK, sign_up
from tests.notifications.receivers import HookReceiver, SmtpSink, free_port


@pytest.fixture
def app(services: Services) -> Iterator[TestClient]:
    services.settings.webhooks.allow_private_targets = True
    with TestClient(create_app(services=services), raise_server_exceptions=False) as client:
        yield client


def owner_id(client: TestClient, headers: dict[str, str]) -> str:
    return str(client.get("/api/v1/me", headers=headers).json()["id"])


def press_test_button(client: TestClient, headers: dict[str, str], endpoint_id: str) -> dict[str, Any]:
    """Press the test button (answered at once) and wait for the delivery's outcome."""
    answer = client.post(f"/api/v1/webhooks/{endpoint_id}/test", headers=headers)
    assert answer.status_code == 202 and answer.json()["state"] == "pending", answer.text
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        listed = client.get(answer.headers["location"], headers=headers).json()["items"]
        mine = next(d for d in listed if d["id"] == answer.json()["id"])
        if mine["state"] in ("delivered", "failed"):
            return dict(mine)
        time.sleep(0.05)
    raise AssertionError(f"the test delivery never ended: {mine}")


def signed_up(app: TestClient, services: Services, email: str) -> dict[str, str]:
    """A verified account, without its verification message (these tests count the messages that follow)."""
    headers = sign_up(app, email)
    with services.session_factory() as session:
        session.execute(delete(OutboxMessage).where(OutboxMessage.kind == "verify_email"))
        session.commit()
    return headers


def fire(services: Services, name: str, owner: str, **data: object) -> None:
    with services.session_factory() as session:
        emit(session, name, owner_id=owner, **data)
        session.commit()


def test_a_receiver_that_fails_twice_gets_the_event_later_with_the_same_id(
    services: Services, app: TestClient, frozen_clock: Clock
) -> None:
    alice = sign_up(app, "alice@example.com")
    with HookReceiver(fail_first=2) as hooks:
        made = app.post(
            "/api/v1/webhooks", json={"url": hooks.url(), "events": ["model.ready"]}, headers=alice
        )
        fire(services, "model.ready", owner_id(app, alice), model_id="m1", pet_id="p1")
        for _ in range(3):
            webhooks.deliver_due(services.session_factory, services.settings, worker_id="w")
            frozen_clock.advance(timedelta(minutes=6))
        assert len(hooks.received) == 3
        assert len({hit.headers["webhook-id"] for hit in hooks.received}) == 1
        body = Webhook(made.json()["secret"]).verify(hooks.received[-1].body, hooks.received[-1].headers)
        assert body["data"]["model_id"] == "m1"
    listed = app.get(f"/api/v1/webhooks/{made.json()['id']}/deliveries", headers=alice).json()["items"]
    assert [(d["state"], d["attempts"], d["last_status"]) for d in listed] == [("delivered", 3, 204)]


def test_private_targets_are_refused_without_the_setting(services: Services, app: TestClient) -> None:
    alice = sign_up(app, "alice@example.com")
    with HookReceiver() as hooks:
        made = app.post(
            "/api/v1/webhooks", json={"url": hooks.url(), "events": ["render.ready"]}, headers=alice
        )
        services.settings.webhooks.allow_private_targets = False
        fire(services, "render.ready", owner_id(app, alice), render_id="r1", model_id="m1")
        webhooks.deliver_due(services.session_factory, services.settings, worker_id="w")
        assert hooks.received == []
        listed = app.get(f"/api/v1/webhooks/{made.json()['id']}/deliveries", headers=alice).json()["items"]
        assert "non-public address" in listed[0]["last_error"] and listed[0]["state"] == "pending"
        for url in (
            "http://127.0.0.1/x",
            "http://[::1]/x",
            "http://169.254.169.254/latest",
            "http://10.0.0.1/",
        ):
            refused = app.post(
                "/api/v1/webhooks", json={"url": url, "events": ["render.ready"]}, headers=alice
            )
            assert refused.status_code == 422 and refused.json()["code"] == "webhook_target_forbidden", url
        tested = press_test_button(app, alice, made.json()["id"])
        assert tested["state"] == "failed" and hooks.received == []


def test_https_only_in_production_and_bad_input_is_a_problem(services: Services, app: TestClient) -> None:
    alice = sign_up(app, "alice@example.com")
    for body, code in (
        ({"url": "ftp://example.com/", "events": ["model.ready"]}, "invalid_webhook_url"),
        ({"url": "https://user:pw@example.com/", "events": ["model.ready"]}, "invalid_webhook_url"),
        ({"url": "https://example.com/", "events": ["everything"]}, "invalid_webhook_events"),
    ):
        answer = app.post("/api/v1/webhooks", json=body, headers=alice)
        assert answer.status_code == 422 and answer.json()["code"] == code
    services.settings.environment = "production"
    services.settings.security.key_encryption_key = TEST_KEK  # production's is configured
    answer = app.post(
        "/api/v1/webhooks", json={"url": "http://example.com/", "events": ["model.ready"]}, headers=alice
    )
    assert answer.json()["code"] == "webhook_https_required"
    bob = sign_up(app, "bob@example.com")
    mine = app.post(
        "/api/v1/webhooks", json={"url": "https://example.com/", "events": ["model.ready"]}, headers=alice
    ).json()
    assert app.delete(f"/api/v1/webhooks/{mine['id']}", headers=bob).status_code == 404
    assert app.post(f"/api/v1/webhooks/{mine['id']}/test", headers=bob).status_code == 404


def test_redirects_are_not_followed_and_the_answer_is_read_only_a_little(
    services: Services, app: TestClient
) -> None:
    alice = sign_up(app, "alice@example.com")
    with HookReceiver() as target, HookReceiver(redirect_to="") as hooks:
        hooks.redirect_to = target.url()
        made = app.post(
            "/api/v1/webhooks", json={"url": hooks.url(), "events": ["model.ready"]}, headers=alice
        )
        tested = press_test_button(app, alice, made.json()["id"])
        assert tested["last_status"] == 307 and tested["state"] == "failed"
        assert target.received == []
    with HookReceiver() as big:
        made = app.post("/api/v1/webhooks", json={"url": big.url(), "events": ["model.ready"]}, headers=alice)
        tested = press_test_button(app, alice, made.json()["id"])
        assert tested["state"] == "delivered"  # a 100 KB answer is cut at a few KB, not read


def test_an_endpoint_failing_for_five_days_is_disabled_and_its_owner_emailed(
    services: Services, app: TestClient, frozen_clock: Clock
) -> None:
    alice = sign_up(app, "alice@example.com")
    dead = f"http://127.0.0.1:{free_port()}/gone"
    made = app.post("/api/v1/webhooks", json={"url": dead, "events": ["model.ready"]}, headers=alice).json()
    for day in range(6):
        fire(services, "model.ready", owner_id(app, alice), model_id=f"m{day}", pet_id="p")
        webhooks.deliver_due(services.session_factory, services.settings, worker_id="w")
        frozen_clock.advance(timedelta(days=1))
    with services.session_factory() as session:
        endpoint = session.get(WebhookEndpoint, made["id"])
        assert endpoint is not None and endpoint.disabled_at is not None
        kinds = list(session.scalars(select(OutboxMessage.kind)))
    assert "webhook_disabled" in kinds
    assert app.get("/api/v1/webhooks", headers=alice).json()["items"][0]["disabled_at"] is not None


def test_file_outbox_writes_eml_and_deletes_it_with_what_it_mentions(
    services: Services, app: TestClient, frozen_clock: Clock, tmp_path: Path
) -> None:
    services.settings.email.smtp_url = None
    alice = signed_up(app, services, "alice@example.com")
    report = notifications.deliver_due(services.session_factory, services.settings, worker_id="w")
    files = list(services.settings.outbox_dir.glob("*.eml"))
    assert len(report.sent) == 1 and len(files) == 1
    assert b"Message-ID: <" in files[0].read_bytes() and b"alice@example.com" in files[0].read_bytes()
    _ = alice
    frozen_clock.advance(timedelta(days=31))
    with services.session_factory() as session:
        assert notifications.sweep(session, outbox_dir=services.settings.outbox_dir) == 1
        session.commit()
    assert list(services.settings.outbox_dir.glob("*.eml")) == []


def test_a_claim_that_expires_is_resent_with_the_same_message_id_and_failures_reach_staff(
    services: Services, app: TestClient, frozen_clock: Clock
) -> None:
    dead = f"smtp://127.0.0.1:{free_port()}"
    services.settings.email.smtp_url = dead
    signed_up(app, services, "alice@example.com")
    with services.session_factory() as session:
        row = session.scalars(select(OutboxMessage)).one()
        # a deliverer claimed it and died after sending, before it could commit "sent"
        assert notifications.claim(
            session, row.id, worker_id="dead", now=frozen_clock.now(), ttl=timedelta(seconds=120)
        )
    with SmtpSink() as sink:
        services.settings.email.smtp_url = sink.url
        assert (
            notifications.deliver_due(services.session_factory, services.settings, worker_id="w").sent == []
        )
        frozen_clock.advance(timedelta(seconds=121))
        assert notifications.deliver_due(services.session_factory, services.settings, worker_id="w").sent
        assert sink.messages[0]["Message-ID"] == f"<{row.message_id}>"
    # the server is down: retried with backoff, then failed and listed for staff
    services.settings.email.smtp_url = dead
    services.settings.email.max_attempts = 2
    fire(services, "password.changed", row.user_id or "")
    for _ in range(3):
        notifications.deliver_due(services.session_factory, services.settings, worker_id="w")
        frozen_clock.advance(timedelta(hours=1))
    with services.session_factory() as session:
        failed = notifications.problems(session)
        assert [r.state for r in failed] == ["failed"] and "ConnectionRefusedError" in (
            failed[0].last_error or ""
        )


def test_people_turn_off_job_messages_but_not_legal_or_security_ones(
    services: Services, app: TestClient
) -> None:
    alice = signed_up(app, services, "alice@example.com")
    prefs = app.put(
        "/api/v1/me/email-preferences",
        json={"job_messages": False, "timezone": "Europe/Paris"},
        headers=alice,
    )
    assert prefs.status_code == 200 and prefs.json()["timezone"] == "Europe/Paris"
    bad = app.put("/api/v1/me/email-preferences", json={"timezone": "Mars/Olympus"}, headers=alice)
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_timezone"
    me = owner_id(app, alice)
    fire(services, "model.failed", me, model_id="m", pet_id="p", error_code="x")
    fire(services, "password.changed", me)
    with services.session_factory() as session:
        kinds = sorted(session.scalars(select(OutboxMessage.kind)))
        assert kinds == ["password_changed", "token_created"]
        assert (
            "(Europe/Paris)"
            in session.scalars(
                select(OutboxMessage.text_body).where(OutboxMessage.kind == "password_changed")
            ).one()
        )
    assert app.get("/api/v1/staff/outbox", headers=alice).status_code == 404


def test_the_test_button_is_rate_limited_per_account(services: Services, app: TestClient) -> None:
    alice = sign_up(app, "alice@example.com")
    with HookReceiver() as hooks:
        made = app.post(
            "/api/v1/webhooks", json={"url": hooks.url(), "events": ["model.ready"]}, headers=alice
        )
        answers = [app.post(f"/api/v1/webhooks/{made.json()['id']}/test", headers=alice) for _ in range(6)]
        assert [a.status_code for a in answers] == [202] * 5 + [429]
        assert answers[-1].json()["code"] == "too_many_webhook_tests" and answers[-1].headers["retry-after"]
