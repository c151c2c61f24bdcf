"""Erasure ends support access at once: the person's cases close in the erasing transaction, and staff
access checks refuse an erased account's items even while a legal hold keeps them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from petportrait.accounts.models import Role
from petportrait.clock import utcnow
from petportrait.web.app import Services
from tests.conftest import PASSWORD, sign_up
from tests.rights.helpers import add_items, audit_entries, staff, user_id


@pytest.mark.parametrize("held", [False, True], ids=["no-hold", "legal-hold"])
def test_after_delete_me_support_gets_404_for_the_photo_of_an_open_case(
    client: TestClient, services: Services, held: bool
) -> None:
    person = sign_up(client, "owner@example.com")
    items = add_items(services, user_id(services, "owner@example.com"))
    support = staff(client, services, Role.SUPPORT)
    opened = client.post(
        "/api/v1/me/support-cases",
        json={"subject": "Blurry portraits", "items": [{"kind": "photo", "id": items.photo_id}], "days": 7},
        headers=person,
    )
    assert opened.status_code == 201, opened.text
    photo_url = f"/api/v1/staff/items/photo/{items.photo_id}/content"
    assert client.get(photo_url, headers=support).status_code == 200
    if held:
        admin = staff(client, services, Role.ADMIN)
        hold = {
            "scope": "item",
            "kind": "photo",
            "item_id": items.photo_id,
            "reason": "court order 12/345",
            "ends_at": (utcnow() + timedelta(days=90)).isoformat(),
        }
        assert client.post("/api/v1/admin/holds", json=hold, headers=admin).status_code == 201

    assert client.delete("/api/v1/me", headers={**person, "X-Current-Password": PASSWORD}).status_code == 202

    # at once, not at the next sweep (and not only when the hold ends)
    assert client.get(photo_url, headers=support).status_code == 404
    assert client.get(f"/api/v1/staff/items/photo/{items.photo_id}", headers=support).status_code == 404
    assert client.get("/api/v1/staff/support-cases", headers=support).json()["items"] == []
    closed = audit_entries(services, action="support_case.closed", subject_id=opened.json()["id"])
    assert [e.purpose for e in closed] == ["erasure"]
    refused = audit_entries(services, action="staff.access_refused", subject_id=items.photo_id)
    assert len(refused) == 2
