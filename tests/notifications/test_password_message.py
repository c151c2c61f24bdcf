"""Changing the password through the API writes the security message in the same transaction."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from petportrait.notifications.models import OutboxMessage
from petportrait.registry import Services
from tests.conftest import PASSWORD, sign_up


def _kinds(services: Services, address: str) -> list[str]:
    with services.session_factory() as session:
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.to_address == address))
        return sorted(row.kind for row in rows)


def test_a_password_change_is_mailed_and_a_wrong_current_password_changes_and_mails_nothing(
    client: TestClient, services: Services
) -> None:
    headers = sign_up(client, "changer@example.com")
    before = _kinds(services, "changer@example.com")
    wrong = client.post(
        "/api/v1/me/password",
        json={"current_password": "not it at all", "new_password": "a brand new long password"},
        headers=headers,
    )
    assert wrong.status_code == 403 and wrong.json()["code"] == "reauth_failed"
    assert _kinds(services, "changer@example.com") == before
    changed = client.post(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "a brand new long password"},
        headers=headers,
    )
    assert changed.status_code == 200, changed.text
    assert _kinds(services, "changer@example.com").count("password_changed") == 1
