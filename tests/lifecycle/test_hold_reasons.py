"""A legal hold's reason and notes are free text an admin wrote: never in the hash chain, and they end."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from petportrait.clock import Clock
from petportrait.db import session_scope
from petportrait.retention import holds
from petportrait.retention.models import AuditEntry, LegalHold
from petportrait.web.app import Services
from tests.canary import database_text
from tests.lifecycle.helpers import DAY
from tests.lifecycle.test_rights_api import admin_headers

REASON = "Subpoena naming Canary Holdsworth, 12 Quay Street"
NOTE = "Renewed on the request of Canary Notewright"


def _hold(client: TestClient, admin: dict[str, str], user_id: str, now: datetime) -> dict[str, str]:
    body = {"scope": "account", "user_id": user_id, "reason": REASON, "ends_at": (now + 10 * DAY).isoformat()}
    response = client.post("/api/v1/admin/holds", json=body, headers=admin)
    assert response.status_code == 201, response.text
    hold: dict[str, str] = response.json()
    renewed = client.post(
        f"/api/v1/admin/holds/{hold['id']}/renew",
        json={"ends_at": (now + 20 * DAY).isoformat(), "note": NOTE, "reason": f"Renewal: {REASON}"},
        headers=admin,
    )
    assert renewed.status_code == 200, renewed.text
    return hold


def test_reasons_and_notes_stay_out_of_the_chain_and_end_after_the_hold(
    client: TestClient, alice: dict[str, str], services: Services, now: datetime, frozen_clock: Clock
) -> None:
    admin = admin_headers(client, services)
    alice_id = client.get("/api/v1/me", headers=alice).json()["id"]
    hold = _hold(client, admin, alice_id, now)
    with services.session_factory() as session:
        chain = " ".join(e.details or "" for e in session.scalars(select(AuditEntry)))
    assert "Holdsworth" not in chain and "Notewright" not in chain
    assert "Holdsworth" in database_text(services.engine)  # kept while the hold is in force
    assert client.get("/api/v1/admin/holds", headers=admin).json()["items"][0]["reason"] == REASON

    frozen_clock.advance(20 * DAY + holds.REASON_DAYS * DAY - timedelta(seconds=1))
    with session_scope(services.session_factory) as session:
        assert holds.end_reasons(session) == 0  # ended, but not REASON_DAYS ago yet
    frozen_clock.advance(timedelta(seconds=2))
    with session_scope(services.session_factory) as session:
        assert holds.end_reasons(session) == 1
    dump = database_text(services.engine)
    assert "Holdsworth" not in dump and "Notewright" not in dump
    with services.session_factory() as session:
        row = session.get(LegalHold, hold["id"])
        assert row is not None and row.reason == "" and row.owner_id == alice_id  # the record stays


def test_erasure_ends_the_reasons_of_ended_holds_and_an_active_hold_keeps_its_own(
    client: TestClient, alice: dict[str, str], services: Services, now: datetime, frozen_clock: Clock
) -> None:
    admin = admin_headers(client, services)
    alice_id = client.get("/api/v1/me", headers=alice).json()["id"]
    ended = _hold(client, admin, alice_id, now)
    assert (
        client.post(f"/api/v1/admin/holds/{ended['id']}/release", json={}, headers=admin).status_code == 200
    )
    body = {
        "scope": "account",
        "user_id": alice_id,
        "reason": "Active canary reason",
        "ends_at": (now + 5 * DAY).isoformat(),
    }
    active = client.post("/api/v1/admin/holds", json=body, headers=admin).json()
    assert client.request(
        "DELETE", "/api/v1/me", headers=alice, json={"current_password": "correct horse battery staple"}
    ).status_code in (200, 202, 204)
    dump = database_text(services.engine)
    assert "Holdsworth" not in dump and "Notewright" not in dump
    assert "Active canary reason" in dump  # the hold in force keeps its reason, in its row only
    with services.session_factory() as session:
        assert session.get(LegalHold, active["id"]).reason == "Active canary reason"  # type: ignore[union-attr]
    frozen_clock.advance(5 * DAY + holds.REASON_DAYS * DAY + timedelta(seconds=1))
    with session_scope(services.session_factory) as session:
        holds.end_reasons(session)
    assert "Active canary reason" not in database_text(services.engine)
