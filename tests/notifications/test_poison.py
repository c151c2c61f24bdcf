"""One bad message never stops email: a message that cannot be built fails alone and is listed for staff;
names with control or separator characters are refused at the edge (and old ones cannot break a subject)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from petportrait.accounts.models import Role
from petportrait.notifications import service as notifications
from petportrait.notifications.models import OutboxMessage
from petportrait.pets.models import Pet
from petportrait.registry import emit
from petportrait.web.app import Services, create_app
from tests.conftest import sign_up
from tests.notifications.receivers import SmtpSink
from tests.rights.helpers import staff

BAD = ["\u2028", "\u2029", "\u0085", "\x00", "\x1b", "\x9b", "\u202e"]


@pytest.fixture
def app(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services=services), raise_server_exceptions=False) as client:
        yield client


def test_names_with_control_or_separator_characters_are_refused(app: TestClient) -> None:
    alice = sign_up(app, "alice@example.com")
    for char in BAD:
        answer = app.post("/api/v1/pets", json={"name": f"Rex{char}y", "species": "dog"}, headers=alice)
        assert answer.status_code == 422 and answer.json()["code"] == "validation_error", repr(char)
        token = app.post(
            "/api/v1/auth/token",
            json={"email": "alice@example.com", "password": "correct horse battery", "name": f"ci{char}"},
        )
        assert token.status_code == 422, repr(char)
    assert (
        app.post("/api/v1/pets", json={"name": "Rex Ünïcödé 🐶", "species": "dog"}, headers=alice).status_code
        == 201
    )


def test_messages_that_cannot_be_built_fail_alone_and_are_listed_for_staff(
    services: Services, app: TestClient
) -> None:
    alice = sign_up(app, "alice@example.com")
    me = app.get("/api/v1/me", headers=alice).json()["id"]
    pet_id = app.post("/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers=alice).json()["id"]
    with services.session_factory() as session:
        # a name stored before names were checked: its subject is still a single clean line
        session.execute(update(Pet).where(Pet.id == pet_id).values(name="Rex\u2028Bcc: x@evil.example"))
        emit(session, "model.failed", owner_id=me, model_id="m0", pet_id=pet_id, error_code="x")
        session.commit()
        for n in range(30):  # rows written before that: their subject breaks a header
            emit(session, "model.failed", owner_id=me, model_id=f"m{n + 1}", pet_id=pet_id, error_code="x")
        session.commit()
        poisoned = session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.kind == "model_failed", OutboxMessage.data["model_id"].as_string() != "m0")
            .values(subject="Rex\u2028y")
        )
        assert poisoned.rowcount == 30  # type: ignore[attr-defined]
        session.commit()
    services.settings.email.batch = 10
    with SmtpSink() as sink:
        services.settings.email.smtp_url = sink.url
        for _ in range(5):
            notifications.deliver_due(services.session_factory, services.settings, worker_id="w")
        subjects = sorted(str(m["Subject"]) for m in sink.messages)
    assert "The model of Rex Bcc: x@evil.example could not be trained" in subjects
    assert any("new sign-in" in s for s in subjects)
    assert all("Bcc" not in m for m in sink.messages)
    admin = staff(app, services, Role.ADMIN)
    listed = app.get("/api/v1/staff/outbox", headers=admin).json()
    assert len(listed) == 30 and {m["state"] for m in listed} == {"failed"}
    assert all("cannot be built" in (m["last_error"] or "") for m in listed)
