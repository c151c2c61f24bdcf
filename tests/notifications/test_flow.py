"""The real flow: train, render, delete, expiry under a controlled clock, a content-policy notice and an
erasure; every message arrives at a real SMTP server on loopback and every event at a loopback receiver,
signed so that `standardwebhooks` verifies it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from standardwebhooks import Webhook

from petportrait.clock import Clock
from petportrait.integrations import service as webhooks
from petportrait.jobs import runner
from petportrait.lifecycle import sweeper
from petportrait.notifications import service as notifications
from petportrait.rights import service as rights_service
from petportrait.web.app import Services, create_app
from tests.conftest import PASSWORD, pet_photos, sign_up
from tests.notifications.receivers import HookReceiver, SmtpSink

ALL_EVENTS = list(webhooks.EVENTS)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


@pytest.fixture
def hooks() -> Iterator[HookReceiver]:
    with HookReceiver() as receiver:
        yield receiver


@pytest.fixture
def wired(services: Services, sink: SmtpSink, tmp_path: Path) -> Iterator[tuple[Services, TestClient]]:
    services.settings.email.smtp_url = sink.url
    services.settings.webhooks.allow_private_targets = True
    services.settings.ml.train_steps = 6
    services.settings.ml.resolution = 64
    services.settings.ml.device = "cpu"
    with TestClient(create_app(services=services), raise_server_exceptions=False) as client:
        yield services, client


def deliver(services: Services) -> None:
    notifications.deliver_due(services.session_factory, services.settings, worker_id="test")
    webhooks.deliver_due(services.session_factory, services.settings, worker_id="test")


def run_jobs(services: Services, tmp_path: Path, *job_ids: str) -> None:
    ctx = runner.WorkerContext(
        settings=services.settings,
        session_factory=services.session_factory,
        blobs=services.blobs,
        handlers=services.registry.job_handlers,
        worker_id="test-worker",
    )
    for job_id in job_ids:
        assert runner.run_job(ctx, job_id) == "succeeded"


def events_at(hooks: HookReceiver, secret: str) -> list[dict[str, Any]]:
    out = []
    for hit in hooks.received:
        out.append(Webhook(secret).verify(hit.body, hit.headers))
    return out


def subjects(sink: SmtpSink) -> list[str]:
    """What arrived, but the verification messages of sign-up (the accounts are verified at once)."""
    found = [str(m["Subject"]) for m in sink.messages]
    return [s for s in found if not s.startswith("Confirm your email")]


def test_each_message_and_event_arrives_through_train_render_delete_expiry_notice_erasure(
    wired: tuple[Services, TestClient],
    sink: SmtpSink,
    hooks: HookReceiver,
    tmp_path: Path,
    frozen_clock: Clock,
) -> None:
    services, client = wired
    alice = sign_up(client, "alice@example.com")
    deliver(services)
    assert subjects(sink) == ["A new sign-in to your petportrait account"]

    created = client.post("/api/v1/webhooks", json={"url": hooks.url(), "events": ALL_EVENTS}, headers=alice)
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    assert secret.startswith("whsec_")
    assert "secret" not in client.get("/api/v1/webhooks", headers=alice).json()["items"][0]

    pet = client.post("/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers=alice).json()
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in pet_photos("dog")[:3]]
    assert client.post(f"/api/v1/pets/{pet['id']}/photos", files=files, headers=alice).status_code == 201
    trained = client.post(f"/api/v1/pets/{pet['id']}/models", headers=alice).json()
    run_jobs(services, tmp_path, trained["job"]["id"])
    model_id = trained["model"]["id"]
    rendered = client.post(
        f"/api/v1/models/{model_id}/renders",
        json={"style": "oil_painting", "count": 2, "seed": 7, "steps": 3},
        headers=alice,
    )
    assert rendered.status_code == 202, rendered.text
    run_jobs(services, tmp_path, rendered.json()["job"]["id"])
    deliver(services)

    # the clock is frozen, so these were all due at the same instant: one delivery run, in either order
    got = sorted(events_at(hooks, secret), key=lambda e: e["type"] != "model.ready")
    assert [e["type"] for e in got] == ["model.ready", "render.ready", "render.ready"]
    assert got[0]["data"]["model_id"] == model_id and got[0]["data"]["links"]["model"].endswith(model_id)
    assert all("bytes" not in json.dumps(e) and "base64" not in json.dumps(e) for e in got)
    assert sorted(subjects(sink)[1:]) == ["2 new portraits of Rex", "The model of Rex is ready"]
    (portraits,) = [m for m in sink.messages if str(m["Subject"]) == "2 new portraits of Rex"]
    assert portraits.is_multipart() and {p.get_content_type() for p in portraits.walk()} >= {
        "text/plain",
        "text/html",
    }
    assert not any(p.get_content_maintype() == "image" for p in portraits.walk())
    assert "/portraits" in portraits.get_payload()[0].get_payload(decode=True).decode()

    render_ids = [e["data"]["render_id"] for e in got[1:]]
    deleted = client.delete(f"/api/v1/renders/{render_ids[0]}", headers=alice)
    assert deleted.status_code == 204
    deliver(services)
    last = events_at(hooks, secret)[-1]
    assert last["type"] == "item.deleted"
    assert last["data"] | {"links": None} == {
        "kind": "render",
        "item_id": render_ids[0],
        "reason": "owner_deleted",
        "links": None,
    }

    # a content-policy notice about the other portrait
    with services.session_factory() as session:
        licence = rights_service.licence_for_render(session, render_id=render_ids[1])
        assert licence is not None
        case = rights_service.open_case(
            session, staff_id="ts", policy_clause="C3", facts="Looks cruel.", licence_id=licence.id
        )
        rights_service.send_notice(
            session, case=case, staff_id="ts", how_to_fix="Delete it.", settings=services.settings
        )
        session.commit()
    deliver(services)
    notice = sink.messages[-1]
    assert str(notice["Subject"]) == "Written notice: a portrait breaks the content policy"
    text = notice.get_payload()[0].get_payload(decode=True).decode()
    assert "Looks cruel." in text and "Deadline to fix it" in text and "How to appeal" in text
    assert events_at(hooks, secret)[-1]["type"] == "notice.sent"

    # 3 days before the photos and the portrait go: one reminder each; never twice
    frozen_clock.advance(timedelta(days=27, hours=1))
    with services.session_factory() as session:
        report = notifications.send_reminders(session)
        session.commit()
        assert (report.portraits, report.photos, report.messages) == (1, 3, 2)
        assert notifications.send_reminders(session).messages == 0
    deliver(services)
    assert set(subjects(sink)[-2:]) == {
        "1 portrait(s) will be deleted in 3 days",
        "The photos of Rex will be deleted in 3 days",
    }

    # expiry: the sweeper deletes them and the integrator hears why
    frozen_clock.advance(timedelta(days=4))
    sweeper.sweep_once(services.session_factory, services.blobs, settings=services.settings, holder="t")
    deliver(services)
    expired = [e["data"] for e in events_at(hooks, secret) if e["data"].get("reason") == "expired"]
    assert {(e["kind"], e["item_id"]) for e in expired} >= {("render", render_ids[1])}
    assert len([e for e in expired if e["kind"] == "photo"]) == 3

    # erasure: the receipt goes to the address the account had, and it is the last message
    before = len(sink.messages)
    reauth = {**alice, "X-Current-Password": PASSWORD}
    assert client.delete("/api/v1/me", headers=reauth).status_code == 202
    deliver(services)
    assert len(sink.messages) == before + 1
    receipt = sink.messages[-1]
    assert str(receipt["To"]) == "alice@example.com"
    assert str(receipt["Subject"]) == "Your petportrait account is deleted"
    with services.session_factory() as session:
        notifications.on_token_created  # noqa: B018 - nothing else can be written for an erased account
        from petportrait.registry import emit

        emit(session, "password.changed", owner_id=None)
        session.commit()
    deliver(services)
    assert len(sink.messages) == before + 1
    # every message had its own Message-ID
    ids = [m["Message-ID"] for m in sink.messages]
    assert len(set(ids)) == len(ids)
