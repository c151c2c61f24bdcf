"""Staff access is least-privilege and audited: items only through a consent, an open support case the
person opened, or a trust & safety case; otherwise 404 on every item path."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from petportrait.accounts.models import Role
from petportrait.clock import Clock
from petportrait.web.app import Services
from tests.conftest import sign_up
from tests.rights.helpers import add_items, audit_entries, staff, user_id

KINDS = ("photo", "model", "render")


def _item_paths(kind: str, item_id: str) -> list[str]:
    own = {
        "photo": [f"/api/v1/photos/{item_id}", f"/api/v1/photos/{item_id}/content"],
        "model": [f"/api/v1/models/{item_id}"],
        "render": [f"/api/v1/renders/{item_id}", f"/api/v1/renders/{item_id}/content"],
    }[kind]
    return [*own, f"/api/v1/staff/items/{kind}/{item_id}", f"/api/v1/staff/items/{kind}/{item_id}/content"]


def test_staff_without_a_case_consent_or_support_scope_get_404_on_every_item_path(
    client: TestClient, services: Services
) -> None:
    person = sign_up(client, "owner@example.com")
    items = add_items(services, user_id(services, "owner@example.com"))
    everyone = {role: staff(client, services, role) for role in Role if role is not Role.USER}
    for role, headers in everyone.items():
        for kind in KINDS:
            for path in _item_paths(kind, items.ref(kind)):
                response = client.get(path, headers=headers)
                assert response.status_code == 404, (role, path, response.text)
                assert response.headers["content-type"].startswith("application/problem+json")
    refused = audit_entries(services, action="staff.access_refused")
    assert {(e.purpose, e.subject_kind) for e in refused} == {
        (role.value, kind) for role in everyone for kind in KINDS
    }
    assert all(e.owner_id == items.owner_id for e in refused)  # the person sees attempts on their items
    # the owner still reaches their own items, but not the staff paths
    assert client.get(f"/api/v1/renders/{items.render_id}", headers=person).status_code == 200
    assert client.get(f"/api/v1/staff/items/render/{items.render_id}", headers=person).status_code == 404


def test_support_sees_only_the_named_items_while_the_case_is_open(
    client: TestClient, services: Services, frozen_clock: Clock
) -> None:
    person = sign_up(client, "owner@example.com")
    items = add_items(services, user_id(services, "owner@example.com"))
    support = staff(client, services, Role.SUPPORT)
    too_long = client.post(
        "/api/v1/me/support-cases",
        json={"subject": "x", "items": [{"kind": "model", "id": items.model_id}], "days": 8},
        headers=person,
    )
    assert too_long.status_code == 422
    opened = client.post(
        "/api/v1/me/support-cases",
        json={
            "subject": "My portraits look blurry",
            "items": [{"kind": "model", "id": items.model_id}, {"kind": "photo", "id": items.photo_id}],
        },
        headers=person,
    )
    assert opened.status_code == 201, opened.text
    case = opened.json()
    listed = client.get("/api/v1/staff/support-cases", headers=support).json()["items"]
    assert [c["id"] for c in listed] == [case["id"]]

    seen = client.get(f"/api/v1/staff/items/model/{items.model_id}", headers=support)
    assert seen.status_code == 200 and seen.json()["basis"] == {"kind": "support_case", "id": case["id"]}
    photo = client.get(f"/api/v1/staff/items/photo/{items.photo_id}/content", headers=support)
    assert photo.status_code == 200 and photo.content.startswith(b"\xff\xd8")
    read = audit_entries(services, action="photo.read", subject_id=items.photo_id)
    assert read[-1].purpose == "support_case" and read[-1].owner_id == items.owner_id
    viewed = audit_entries(services, action="staff.item_viewed")
    assert [(e.subject_kind, e.purpose) for e in viewed] == [
        ("model", "support_case"),
        ("photo", "support_case"),
    ]
    # not named: not seen, and other staff roles get nothing from a support case
    assert client.get(f"/api/v1/staff/items/render/{items.render_id}", headers=support).status_code == 404
    marketer = staff(client, services, Role.MARKETING)
    assert client.get(f"/api/v1/staff/items/model/{items.model_id}", headers=marketer).status_code == 404
    # ends after 7 days at most
    frozen_clock.advance(timedelta(days=7))
    assert client.get(f"/api/v1/staff/items/model/{items.model_id}", headers=support).status_code == 404
    assert client.get("/api/v1/staff/support-cases", headers=support).json()["items"] == []


def test_closing_a_support_case_ends_access_at_once(client: TestClient, services: Services) -> None:
    person = sign_up(client, "owner@example.com")
    items = add_items(services, user_id(services, "owner@example.com"))
    support = staff(client, services, Role.SUPPORT)
    case = client.post(
        "/api/v1/me/support-cases",
        json={"subject": "Render failed", "items": [{"kind": "render", "id": items.render_id}], "days": 2},
        headers=person,
    ).json()
    assert client.get(f"/api/v1/staff/items/render/{items.render_id}", headers=support).status_code == 200
    closed = client.post(f"/api/v1/me/support-cases/{case['id']}/close", headers=person)
    assert closed.json()["open"] is False
    assert client.get(f"/api/v1/staff/items/render/{items.render_id}", headers=support).status_code == 404
    # a person cannot name someone else's item, nor close someone else's case
    other = sign_up(client, "other@example.com")
    foreign = client.post(
        "/api/v1/me/support-cases",
        json={"subject": "x", "items": [{"kind": "render", "id": items.render_id}]},
        headers=other,
    )
    assert foreign.status_code == 404
    assert client.post(f"/api/v1/me/support-cases/{case['id']}/close", headers=other).status_code == 404


def test_trust_and_safety_see_an_item_only_while_a_case_about_it_is_open(
    client: TestClient, services: Services
) -> None:
    person = sign_up(client, "owner@example.com")
    items = add_items(services, user_id(services, "owner@example.com"))
    client.get(f"/api/v1/renders/{items.render_id}/content", headers=person)
    licence_id = client.get("/api/v1/me/licences", headers=person).json()["items"][0]["id"]
    ts = staff(client, services, Role.TRUST_SAFETY)
    path = f"/api/v1/staff/items/render/{items.render_id}/content"
    assert client.get(path, headers=ts).status_code == 404
    case = client.post(
        "/api/v1/staff/cases",
        json={"licence_id": licence_id, "policy_clause": "C3", "facts": "x"},
        headers=ts,
    ).json()
    shown = client.get(path, headers=ts)
    assert shown.status_code == 200 and shown.content.startswith(b"\x89PNG")
    assert audit_entries(services, action="staff.item_viewed")[-1].purpose == "trust_safety_case"
    # the case is about the render, not the pet's photos
    assert client.get(f"/api/v1/staff/items/photo/{items.photo_id}", headers=ts).status_code == 404
    client.post(
        f"/api/v1/staff/cases/{case['id']}/decide", json={"outcome": "dismiss", "reasons": "fine"}, headers=ts
    )
    assert client.get(path, headers=ts).status_code == 404
