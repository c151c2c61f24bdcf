"""Webhook secrets are stored only sealed under a data key of their endpoint (issue 19): shown once at
creation, opened to sign a delivery, unreadable for good once the endpoint is deleted or its erased
owner's endpoints are swept; the migration seals the secrets of existing endpoints.

Real components: the app over HTTP, a loopback webhook receiver, SQLite (or PostgreSQL) as configured.
"""

from __future__ import annotations

import base64
import secrets
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from standardwebhooks import Webhook

from petportrait.clock import Clock, utcnow
from petportrait.db import make_engine, make_session_factory
from petportrait.integrations import service as webhooks
from petportrait.integrations.models import WebhookEndpoint, secret_key_name
from petportrait.lifecycle.service import erase_account
from petportrait.migrate import upgrade
from petportrait.registry import emit
from petportrait.retention.kek import KekMismatch, verify_kek
from petportrait.retention.models import DataKey
from petportrait.web.app import Services, create_app
from tests.conftest import make_settings, sign_up
from tests.notifications.receivers import HookReceiver


def _me(client: TestClient, headers: dict[str, str]) -> str:
    return str(client.get("/api/v1/me", headers=headers).json()["id"])


def _has_key(services: Services, name: str) -> bool:
    with services.session_factory() as session:
        return session.get(DataKey, name) is not None


def test_the_secret_is_stored_sealed_signs_deliveries_and_dies_with_its_endpoint(
    services: Services, frozen_clock: Clock
) -> None:
    services.settings.webhooks.allow_private_targets = True
    with (
        TestClient(create_app(services=services), raise_server_exceptions=False) as app,
        HookReceiver() as hooks,
    ):
        alice = sign_up(app, "sealed@example.com")
        owner = _me(app, alice)
        made = app.post(
            "/api/v1/webhooks", json={"url": hooks.url(), "events": ["model.ready"]}, headers=alice
        )
        assert made.status_code == 201
        secret, endpoint_id = made.json()["secret"], made.json()["id"]
        raw = base64.b64decode(secret.removeprefix("whsec_"))
        with services.engine.connect() as conn:  # nowhere in the row, in any form
            row = conn.execute(
                text("SELECT * FROM webhook_endpoints WHERE id = :id"), {"id": endpoint_id}
            ).one()
        stored = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row)
        for form in (secret.encode(), secret.removeprefix("whsec_").encode(), raw):
            assert form not in stored
        if services.engine.dialect.name == "sqlite":
            database = Path(services.settings.database_url.removeprefix("sqlite:///"))
            files = [database, database.with_name(database.name + "-wal")]
            assert not any(secret.encode() in f.read_bytes() for f in files if f.exists())
        assert "secret" not in app.get("/api/v1/webhooks", headers=alice).json()["items"][0]  # shown once

        with services.session_factory() as session:
            emit(session, "model.ready", owner_id=owner, model_id="m1", pet_id="p1")
            session.commit()
        webhooks.deliver_due(services.session_factory, services.settings, worker_id="w")
        assert Webhook(secret).verify(hooks.received[-1].body, hooks.received[-1].headers)["data"]["model_id"]

        name = secret_key_name(owner, endpoint_id)
        assert _has_key(services, name)
        assert app.delete(f"/api/v1/webhooks/{endpoint_id}", headers=alice).status_code == 204
        assert not _has_key(services, name)  # the sealed secret can never be opened again

        # an erased owner's endpoints (kept 2 days for item.deleted) take their keys with them
        later = app.post(
            "/api/v1/webhooks", json={"url": hooks.url(), "events": ["item.deleted"]}, headers=alice
        )
        later_key = secret_key_name(owner, later.json()["id"])
        with services.session_factory() as session:
            erase_account(session, user_id=owner, actor_id=owner)
            session.commit()
        assert _has_key(services, later_key)
        frozen_clock.advance(timedelta(days=2, minutes=1))
        with services.session_factory() as session:
            webhooks.sweep(session)
            session.commit()
            assert (
                session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.owner_id == owner)).all() == []
            )
        assert not _has_key(services, later_key)


def test_the_migration_seals_existing_secrets_under_the_checked_key(tmp_path: Path) -> None:
    kek, wrong = secrets.token_bytes(32), secrets.token_bytes(32)
    security = {"secret_key": "s" * 64, "cookie_secure": False}
    settings = make_settings(
        tmp_path, security={**security, "key_encryption_key": base64.b64encode(kek).decode()}
    )
    engine = make_engine(settings.database_url)
    if engine.dialect.name != "sqlite":
        pytest.skip("a database at an old revision is made fresh on SQLite")
    upgrade(engine, "0410", settings=settings)
    verify_kek(make_session_factory(engine), kek)  # the database's key, recorded
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    owner, endpoint_id = "a" * 32, "e" * 32
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, email, password_hash, role, created_at) "
                "VALUES (:id, 'old@example.com', 'x', 'user', :now)"
            ),
            {"id": owner, "now": utcnow().replace(tzinfo=None)},
        )
        conn.execute(
            text(
                "INSERT INTO webhook_endpoints (id, owner_id, url, events, secret, created_at) "
                "VALUES (:id, :owner, 'https://hooks.example/in', '[\"model.ready\"]', :secret, :now)"
            ),
            {"id": endpoint_id, "owner": owner, "secret": secret, "now": utcnow().replace(tzinfo=None)},
        )
    wrong_settings = settings.model_copy(deep=True)
    wrong_settings.security.key_encryption_key = base64.b64encode(wrong).decode()
    with pytest.raises(KekMismatch):  # a wrong key seals nothing (and the migration does not happen)
        upgrade(engine, settings=wrong_settings)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT secret FROM webhook_endpoints")).scalar() == secret

    upgrade(engine, settings=settings)
    with engine.connect() as conn:
        columns = [c[1] for c in conn.execute(text("PRAGMA table_info(webhook_endpoints)"))]
    assert "secret" not in columns and "sealed_secret" in columns
    with make_session_factory(engine)() as session:
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None and secret.encode() not in endpoint.sealed_secret
        assert webhooks.endpoint_secret(session, endpoint, settings=settings) == secret
        assert session.get(DataKey, secret_key_name(owner, endpoint_id)) is not None
    engine.dispose()
