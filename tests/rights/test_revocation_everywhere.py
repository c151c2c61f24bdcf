"""A revoked licence is honoured on every path that serves the portrait's image: the page image, the
export ZIP, the marketing library (its list, its content, its ZIP), as well as the API and the download."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from fastapi.testclient import TestClient

from petportrait.accounts.models import Role
from petportrait.web.app import Services
from tests.rights.helpers import add_items, staff, user_id
from tests.web.test_pages import page_sign_up


@pytest.fixture(autouse=True)
def _no_style_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    from petportrait.web.pages import examples

    monkeypatch.setattr(examples, "ensure_started", lambda settings: False)


def test_a_revoked_portrait_is_served_by_no_door(client: TestClient, services: Services) -> None:
    csrf = page_sign_up(client, "owner@example.com")  # the person browses with the session cookie
    person = {"X-CSRF-Token": csrf}
    items = add_items(services, user_id(services, "owner@example.com"))
    marketer = staff(client, services, Role.MARKETING)
    ts = staff(client, services, Role.TRUST_SAFETY)

    shown = client.get(f"/portraits/{items.render_id}/image")
    assert shown.status_code == 200 and shown.content.startswith(b"\x89PNG")
    assert "max-age" not in shown.headers["cache-control"]  # no cached copy outlives a revocation

    # the person lets marketing use the portrait
    filed = client.post(
        "/api/v1/staff/marketing/requests",
        json={
            "items": [{"kind": "render", "id": items.render_id}],
            "channels": ["website"],
            "purpose": "Show real portraits on the homepage gallery.",
            "notice_version": "mk-2026-11",
        },
        headers=marketer,
    )
    assert filed.status_code == 201, filed.text
    request = client.get("/api/v1/me/consent-requests").json()["items"][0]
    granted = client.post(
        f"/api/v1/me/consent-requests/{request['id']}/items/{request['items'][0]['id']}/grant",
        json={"notice_version": request["notice"]["version"]},
        headers=person,
    )
    assert granted.status_code == 201, granted.text
    assets = client.get("/api/v1/marketing/assets", headers=marketer).json()["items"]
    assert len(assets) == 1

    # trust & safety revoke the licence at once (clearly illegal)
    licence_id = client.get("/api/v1/me/licences").json()["items"][0]["id"]
    case = client.post(
        "/api/v1/staff/cases",
        json={"licence_id": licence_id, "policy_clause": "C7", "facts": "Abusive imagery."},
        headers=ts,
    ).json()
    marked = client.post(f"/api/v1/staff/cases/{case['id']}/clearly-illegal", json={"facts": "x"}, headers=ts)
    assert marked.status_code == 200 and marked.json()["state"] == "revoked"

    # the page image, the API content and the page download
    for path in (
        f"/portraits/{items.render_id}/image",
        f"/api/v1/renders/{items.render_id}/content",
        f"/portraits/{items.render_id}/download",
    ):
        refused = client.get(path)
        assert refused.status_code == 451, (path, refused.status_code)
        assert not refused.content.startswith(b"\x89PNG")

    # the export lists the portrait without its image and says why
    export = client.post("/api/v1/me/export", headers=person)
    assert export.status_code == 200
    with zipfile.ZipFile(io.BytesIO(export.content)) as archive:
        names = archive.namelist()
        renders = json.loads(archive.read("renders.json"))
    assert not any(n.startswith("renders/") for n in names), names
    (listed,) = [r for r in renders if r["id"] == items.render_id]
    assert listed["file"] is None and listed["withheld"] == "licence_revoked"
    assert listed["licence_id"] == licence_id and "revoked under the content policy" in listed["why"]

    # the marketing library: not listed, its content refused, not in its ZIP
    assert client.get("/api/v1/marketing/assets", headers=marketer).json()["items"] == []
    assert client.get(assets[0]["content_url"], headers=marketer).status_code == 404
    library = client.get("/api/v1/marketing/export", headers=marketer)
    assert library.status_code == 200
    with zipfile.ZipFile(io.BytesIO(library.content)) as archive:
        assert not [n for n in archive.namelist() if n.endswith(".png")]
