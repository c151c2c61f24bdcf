"""Email is a store of personal data like any other: a message ends with what it names and with its account,
its .eml file with it, and a delivery error never keeps the address."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from petportrait.clock import Clock
from petportrait.db import session_scope
from petportrait.lifecycle import sweeper
from petportrait.notifications import service as notifications
from petportrait.notifications.models import OutboxMessage, OutboxState
from petportrait.registry import emit
from petportrait.retention import tombstones
from petportrait.retention.models import LineageLink
from petportrait.web.app import Services
from tests.canary import database_text, files_bytes
from tests.conftest import PASSWORD, sign_up
from tests.lifecycle.helpers import add_household
from tests.notifications.receivers import SmtpSink

CANARY_EMAIL = "canary.mailbox.7f3a@example.com"


@pytest.fixture
def now(frozen_clock: Clock) -> datetime:
    return frozen_clock.now()


def _messages(services: Services) -> list[OutboxMessage]:
    with services.session_factory() as session:
        return list(session.scalars(select(OutboxMessage)))


def _deliver(services: Services) -> Any:
    return notifications.deliver_due(services.session_factory, services.settings, worker_id="test")


def test_deleting_a_model_ends_the_messages_that_name_it_and_their_files(
    services: Services, now: datetime
) -> None:
    house = add_household(services, at=now, email=CANARY_EMAIL)
    with session_scope(services.session_factory) as session:
        emit(session, "model.ready", owner_id=house.user_id, model_id=house.model_id, pet_id=house.pet_id)
        emit(
            session,
            "render.ready",
            owner_id=house.user_id,
            model_id=house.model_id,
            render_id=house.render_id,
        )
        emit(session, "password.changed", owner_id=house.user_id, tokens_revoked=0)
    _deliver(services)
    outbox = services.settings.outbox_dir
    assert len(list(outbox.glob("*.eml"))) == 3
    with session_scope(services.session_factory) as session:
        tombstones.delete_now(
            session,
            blobs=services.blobs,
            kind="render",
            item_id=house.render_id,
            owner_id=house.user_id,
            actor_id=house.user_id,
        )
    assert sorted(m.kind for m in _messages(services)) == ["model_ready", "password_changed"]
    with session_scope(services.session_factory) as session:
        tombstones.delete_now(
            session,
            blobs=services.blobs,
            kind="model",
            item_id=house.model_id,
            owner_id=house.user_id,
            actor_id=house.user_id,
        )
    left = _messages(services)
    assert [m.kind for m in left] == ["password_changed"]  # it names no item: it keeps its 30 days
    assert [p.stem for p in outbox.glob("*.eml")] == [left[0].id]
    with services.session_factory() as session:
        links = session.scalars(
            select(LineageLink.row_id).where(LineageLink.store == "outbox_messages")
        ).all()
        assert set(links) <= {left[0].id}


def test_expiry_swept_by_the_sweeper_ends_the_messages_too(
    services: Services, now: datetime, frozen_clock: Any
) -> None:
    from datetime import timedelta

    house = add_household(services, at=now, email=CANARY_EMAIL)
    with session_scope(services.session_factory) as session:
        emit(
            session,
            "render.ready",
            owner_id=house.user_id,
            model_id=house.model_id,
            render_id=house.render_id,
        )
    _deliver(services)
    frozen_clock.advance(timedelta(days=31))
    sweeper.sweep_once(services.session_factory, services.blobs, settings=services.settings, holder="t")
    assert [m.kind for m in _messages(services)] == []
    assert list(services.settings.outbox_dir.glob("*.eml")) == []


def test_erasure_deletes_every_message_in_every_state_and_the_receipt_once_sent(
    client: TestClient, services: Services
) -> None:
    headers = sign_up(client, CANARY_EMAIL)
    with session_scope(services.session_factory) as session:
        me = client.get("/api/v1/me", headers=headers).json()["id"]
        emit(session, "password.changed", owner_id=me, tokens_revoked=0)
    _deliver(services)  # sent (a token.created and a password.changed)
    with session_scope(services.session_factory) as session:
        emit(session, "password.changed", owner_id=me, tokens_revoked=0)  # pending
        failed = OutboxMessage(
            user_id=me,
            to_address=CANARY_EMAIL,
            kind="x",
            category="security",
            message_id="f@x",
            subject="s",
            text_body=CANARY_EMAIL,
            html_body="",
            state=OutboxState.FAILED.value,
            attempts=5,
            next_attempt_at=now_of(session),
            created_at=now_of(session),
            retain_until=now_of(session),
            last_error="refused",
        )
        session.add(failed)
    assert {m.state for m in _messages(services)} == {"sent", "pending", "failed"}
    assert client.delete("/api/v1/me", headers={**headers, "X-Current-Password": PASSWORD}).status_code == 202
    (receipt,) = _messages(services)
    assert receipt.kind == "account_erased" and receipt.to_address == CANARY_EMAIL
    assert [p.name for p in services.settings.outbox_dir.glob("*.eml")] == []
    _deliver(services)
    assert CANARY_EMAIL not in database_text(services.engine)
    assert len(list(services.settings.outbox_dir.glob("*.eml"))) == 1  # the receipt, until the next sweep
    with session_scope(services.session_factory) as session:
        notifications.sweep(session, outbox_dir=services.settings.outbox_dir)
    assert _messages(services) == []
    assert CANARY_EMAIL.encode() not in files_bytes(services.settings.data_dir)


def now_of(session: Any) -> datetime:
    from petportrait.clock import utcnow

    return utcnow()


class _Refusing:
    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        return f"550 5.1.1 <{address}>: mailbox {address.partition('@')[0]} unknown"


@pytest.fixture
def refusing_smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.controller.handler = _Refusing()
    with sink:
        yield sink


def test_a_refused_recipient_is_stored_and_logged_as_the_account_not_the_address(
    services: Services, now: datetime, refusing_smtp: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    house = add_household(services, at=now, email=CANARY_EMAIL)
    services.settings.email.smtp_url = refusing_smtp.url
    with session_scope(services.session_factory) as session:
        emit(session, "password.changed", owner_id=house.user_id, tokens_revoked=0)
    with caplog.at_level("INFO"):
        report = _deliver(services)
    assert report.retried or report.failed
    (row,) = _messages(services)
    assert row.last_error and "550" in row.last_error and house.user_id in row.last_error
    local = CANARY_EMAIL.partition("@")[0]
    assert local not in row.last_error.lower()
    ours = [r.getMessage().lower() for r in caplog.records if r.name.startswith("petportrait")]
    assert ours and not any(local in line for line in ours)
    with services.session_factory() as session:
        assert int(session.scalar(select(func.count()).select_from(OutboxMessage)) or 0) == 1


def test_the_outbox_folder_is_declared_in_the_inventory(services: Services) -> None:
    folders = {s.location for s in services.registry.stores_of("folder")}
    assert Path(services.settings.outbox_dir).name in folders
