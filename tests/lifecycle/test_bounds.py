"""Bounds that keep the guarantees: legal holds end within a year (renewable, audited); settings that would
defeat the sweeper, the cure period or blob encryption are refused at start-up with a clear message."""

from __future__ import annotations

import base64
import os
import secrets
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select
from typer.testing import CliRunner

from petportrait.cli import app
from petportrait.retention.models import AuditEntry
from petportrait.settings import Settings, get_settings
from petportrait.web.app import Services
from tests.conftest import PASSWORD, make_settings
from tests.lifecycle.helpers import DAY
from tests.lifecycle.test_rights_api import admin_headers

YEAR = timedelta(days=365)


def _account_hold(user_id: str, ends_at: object) -> dict[str, object]:
    body: dict[str, object] = {"scope": "account", "user_id": user_id, "reason": "litigation 7/2026"}
    if ends_at is not None:
        body["ends_at"] = ends_at
    return body


def test_a_hold_without_an_end_or_ending_beyond_a_year_is_refused_with_a_code(
    client: TestClient, alice: dict[str, str], services: Services, now: datetime
) -> None:
    admin = admin_headers(client, services)
    alice_id = client.get("/api/v1/me", headers=alice).json()["id"]
    cases = [
        (None, "hold_end_required"),
        ((now + YEAR + timedelta(seconds=1)).isoformat(), "hold_too_long"),
        ((now + 100 * YEAR).isoformat(), "hold_too_long"),
        ("9999-12-31T23:59:59+00:00", "hold_too_long"),
        ((now + DAY).replace(tzinfo=None).isoformat(), "hold_end_naive"),
        ((now - DAY).isoformat(), "hold_end_in_past"),
    ]
    for ends_at, code in cases:
        response = client.post("/api/v1/admin/holds", json=_account_hold(alice_id, ends_at), headers=admin)
        assert response.status_code == 422, (ends_at, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == code, ends_at
    placed = client.post(
        "/api/v1/admin/holds", json=_account_hold(alice_id, (now + YEAR).isoformat()), headers=admin
    )
    assert placed.status_code == 201, placed.text


def test_a_hold_is_renewed_at_most_a_year_ahead_and_each_renewal_is_audited(
    client: TestClient, alice: dict[str, str], services: Services, now: datetime, frozen_clock: object
) -> None:
    admin = admin_headers(client, services)
    alice_id = client.get("/api/v1/me", headers=alice).json()["id"]
    hold = client.post(
        "/api/v1/admin/holds", json=_account_hold(alice_id, (now + 300 * DAY).isoformat()), headers=admin
    ).json()
    renew = f"/api/v1/admin/holds/{hold['id']}/renew"
    assert client.post(renew, json={"ends_at": (now + 2 * DAY).isoformat()}, headers=alice).status_code == 404
    too_far = client.post(renew, json={"ends_at": (now + YEAR + DAY).isoformat()}, headers=admin)
    assert too_far.status_code == 422 and too_far.json()["code"] == "hold_too_long"
    no_end = client.post(renew, json={"note": "forever please"}, headers=admin)
    assert no_end.status_code == 422 and no_end.json()["code"] == "hold_end_required"

    frozen_clock.advance(200 * DAY)  # type: ignore[attr-defined]
    later = frozen_clock.now()  # type: ignore[attr-defined]
    token = client.post("/api/v1/auth/token", json={"email": "admin@example.com", "password": PASSWORD})
    admin = {"Authorization": f"Bearer {token.json()['access_token']}"}  # the first token has expired
    same = client.post(renew, json={"ends_at": (later + YEAR).isoformat(), "note": "appeal"}, headers=admin)
    assert same.status_code == 422 and same.json()["code"] == "hold_renewal_reason_required"
    renewed = client.post(
        renew,
        json={
            "ends_at": (later + YEAR).isoformat(),
            "note": "appeal",
            "reason": "The appeal court asked for it.",
        },
        headers=admin,
    )
    assert renewed.status_code == 200, renewed.text
    assert datetime.fromisoformat(renewed.json()["ends_at"]) == later + YEAR
    assert renewed.json()["held_days"] == 200  # in all, since it was placed
    with services.session_factory() as session:
        query = select(AuditEntry).where(AuditEntry.action.like("hold.%")).order_by(AuditEntry.seq)
        entries = session.scalars(query).all()
    assert [e.action for e in entries] == ["hold.placed", "hold.renewed"]
    assert '"previous_ends_at"' in entries[1].details and entries[1].actor_id is not None

    released = client.post(f"/api/v1/admin/holds/{hold['id']}/release", headers=admin)
    assert released.status_code == 200
    ended = client.post(renew, json={"ends_at": (later + DAY).isoformat()}, headers=admin)
    assert ended.status_code == 409 and ended.json()["code"] == "hold_ended"
    assert (
        client.post(
            "/api/v1/admin/holds/nope/renew", json={"ends_at": (later + DAY).isoformat()}, headers=admin
        ).json()["code"]
        == "hold_not_found"
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"retention": {"sweep_interval_seconds": 1e9}}, "sweep_interval_seconds"),
        ({"retention": {"sweep_interval_seconds": 301}}, "at most 300"),
        ({"retention": {"sweep_interval_seconds": 0}}, "more than 0"),
        ({"retention": {"sweep_interval_seconds": float("nan")}}, "sweep_interval_seconds"),
        ({"rights": {"cure_days": 0.00001}}, "cure_days"),
        ({"rights": {"cure_days": 0.99}}, "at least 1"),
        ({"rights": {"cure_days": float("nan")}}, "cure_days"),
        ({"security": {"secret_key": "x" * 40, "key_encryption_key": "not base64!"}}, "base64"),
        (
            {"security": {"secret_key": "x" * 40, "key_encryption_key": base64.b64encode(b"short").decode()}},
            "32 bytes",
        ),
    ],
)
def test_settings_out_of_bounds_are_refused(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        make_settings(tmp_path, **overrides)


def test_the_bounds_themselves_are_accepted(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, retention={"sweep_interval_seconds": 300}, rights={"cure_days": 1})
    assert settings.retention.sweep_interval_seconds == 300 and settings.rights.cure_days == 1


def test_production_refuses_to_start_without_a_key_encryption_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    monkeypatch.setenv("PETPORTRAIT__ENVIRONMENT", "production")
    monkeypatch.setenv("PETPORTRAIT__DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("PETPORTRAIT__SECURITY__SECRET_KEY", secrets.token_hex(32))
    monkeypatch.setenv("PETPORTRAIT__BASE_URL", "https://portraits.example")
    monkeypatch.setenv("PETPORTRAIT__SECURITY__METRICS_TOKEN", "scraper-secret-token-7f3a9c1e5b2d8046")
    monkeypatch.delenv("PETPORTRAIT__SECURITY__KEY_ENCRYPTION_KEY", raising=False)
    with pytest.raises(ValidationError, match="key_encryption_key is required"):
        Settings()
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["retention", "check"])
        assert result.exit_code == 2
        assert "key_encryption_key is required" in result.output
        assert not (tmp_path / "var" / "keys" / "kek.b64").exists()  # nothing made in its place

        monkeypatch.setenv(
            "PETPORTRAIT__SECURITY__KEY_ENCRYPTION_KEY", base64.b64encode(os.urandom(32)).decode()
        )
        get_settings.cache_clear()
        assert get_settings().security.key_encryption_key
    finally:
        get_settings.cache_clear()


def test_the_person_is_told_of_a_hold_only_where_the_settings_allow(
    client: TestClient, alice: dict[str, str], services: Services, now: datetime
) -> None:
    from petportrait.notifications.models import OutboxMessage

    admin = admin_headers(client, services)
    alice_id = client.get("/api/v1/me", headers=alice).json()["id"]

    def told() -> int:
        with services.session_factory() as session:
            rows = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "hold_notice")).all()
            return len(rows)

    hold = _account_hold(alice_id, (now + 30 * DAY).isoformat())
    assert client.post("/api/v1/admin/holds", json=hold, headers=admin).status_code == 201
    assert told() == 0  # the default: the law may forbid telling
    services.settings.retention.tell_owner_of_holds = True
    assert client.post("/api/v1/admin/holds", json=hold, headers=admin).status_code == 201
    assert told() == 1
    with services.session_factory() as session:
        body = session.scalars(
            select(OutboxMessage.text_body).where(OutboxMessage.kind == "hold_notice")
        ).one()
    assert "legal obligation" in body and "litigation" not in body  # until when, not why
