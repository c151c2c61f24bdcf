"""Marketing consent: requests naming exact items, grants with receipts, the library, withdrawal."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from petportrait.accounts.models import Role
from petportrait.clock import utcnow
from petportrait.consent.models import MarketingCopy
from petportrait.consent.notices import MARKETING_NOTICES
from petportrait.db import session_scope
from petportrait.lifecycle import holds, sweeper
from petportrait.retention.models import HoldScope
from petportrait.retention.receipt_check import check_receipt
from petportrait.web.app import Services
from tests.conftest import PASSWORD, sign_up
from tests.rights.helpers import add_items, audit_entries, exists, staff, user_id

NOTICE = "mk-2026-11"


def _file(client: TestClient, marketer: dict[str, str], items: list[tuple[str, str]], **extra: Any) -> Any:
    body = {
        "items": [{"kind": k, "id": i} for k, i in items],
        "channels": ["website", "social"],
        "purpose": "Show real portraits on the homepage gallery for the winter campaign.",
        "notice_version": NOTICE,
        **extra,
    }
    return client.post("/api/v1/staff/marketing/requests", json=body, headers=marketer)


def _setup(client: TestClient, services: Services) -> tuple[dict[str, str], dict[str, str], Any]:
    person = sign_up(client, "owner@example.com")
    marketer = staff(client, services, Role.MARKETING)
    items = add_items(services, user_id(services, "owner@example.com"))
    return person, marketer, items


def _grant_first(client: TestClient, person: dict[str, str]) -> dict[str, Any]:
    inbox = client.get("/api/v1/me/consent-requests", headers=person).json()["items"]
    request = inbox[0]
    item = request["items"][0]
    response = client.post(
        f"/api/v1/me/consent-requests/{request['id']}/items/{item['id']}/grant",
        json={"notice_version": request["notice"]["version"]},
        headers=person,
    )
    assert response.status_code == 201, response.text
    return {"request": request, "item": item, "consent": response.json()}


def test_grant_gives_a_receipt_whose_fields_match_what_was_shown_and_a_library_copy(
    client: TestClient, services: Services
) -> None:
    person, marketer, items = _setup(client, services)
    filed = _file(client, marketer, [("render", items.render_id), ("photo", items.photo_id)])
    assert filed.status_code == 201, filed.text

    inbox = client.get("/api/v1/me/consent-requests", headers=person).json()["items"]
    assert len(inbox) == 1
    shown = inbox[0]
    assert shown["channels"] == ["website", "social"]
    assert shown["notice"] == {"version": NOTICE, "text": MARKETING_NOTICES[NOTICE]}
    assert [(i["kind"], i["item_id"], i["decision"]) for i in shown["items"]] == sorted(
        [("render", items.render_id, "pending"), ("photo", items.photo_id, "pending")],
        key=lambda t: next(i["id"] for i in shown["items"] if i["item_id"] == t[1]),
    )
    render_item = next(i for i in shown["items"] if i["kind"] == "render")
    granted = client.post(
        f"/api/v1/me/consent-requests/{shown['id']}/items/{render_item['id']}/grant",
        json={"notice_version": NOTICE},
        headers=person,
    )
    assert granted.status_code == 201, granted.text
    consent = granted.json()
    assert consent["status"] == "standing" and consent["in_library"]

    receipt_response = client.get(consent["receipt_url"], headers=person)
    assert receipt_response.status_code == 200
    assert "attachment" in receipt_response.headers["content-disposition"]
    receipt = receipt_response.json()
    assert receipt["consentReceiptID"] == consent["id"]
    assert isinstance(receipt["consentTimestamp"], int) and receipt["timestamp"] == consent["granted_at"]
    assert receipt["notice"] == shown["notice"] and receipt["notice_version"] == NOTICE
    assert receipt["purposes"] == [shown["purpose"]]
    assert receipt["services"][0]["purposes"][0]["purpose"] == shown["purpose"]
    assert receipt["channels"] == shown["channels"]
    assert [(i["kind"], i["id"]) for i in receipt["items"]] == [("render", items.render_id)]
    assert receipt["collectionMethod"] == receipt["method"] and "explicit grant" in receipt["method"]
    assert receipt["piiPrincipalId"].startswith("pp-") and "example.com" not in json.dumps(receipt)
    # the grant's audit entry comes with a receipt of the transparency log that anyone can check
    assert [r["entry"]["action"] for r in receipt["log_receipts"]] == ["consent.granted"]
    check_receipt(receipt["log_receipts"][0])

    assets = client.get("/api/v1/marketing/assets", headers=marketer).json()["items"]
    assert [(a["kind"], a["consent_id"]) for a in assets] == [("render", consent["id"])]
    content = client.get(assets[0]["content_url"], headers=marketer)
    assert content.status_code == 200 and content.content.startswith(b"\x89PNG")
    assert audit_entries(services, action="consent.granted", subject_id=items.render_id)
    assert audit_entries(services, action="marketing.asset_read", subject_id=assets[0]["id"])

    # the photo was not granted: it is not in the library
    photo_item = next(i for i in shown["items"] if i["kind"] == "photo")
    declined = client.post(
        f"/api/v1/me/consent-requests/{shown['id']}/items/{photo_item['id']}/decline", headers=person
    )
    assert declined.json()["decision"] == "declined"
    again = client.post(
        f"/api/v1/me/consent-requests/{shown['id']}/items/{photo_item['id']}/grant",
        json={"notice_version": NOTICE},
        headers=person,
    )
    assert again.status_code == 409 and again.json()["code"] == "already_answered"
    assert len(client.get("/api/v1/marketing/assets", headers=marketer).json()["items"]) == 1
    answered = client.get("/api/v1/staff/marketing/requests", headers=marketer).json()["items"][0]
    assert sorted(i["decision"] for i in answered["items"]) == ["declined", "granted"]


def test_marketing_access_to_an_unconsented_item_is_refused_and_audited(
    client: TestClient, services: Services
) -> None:
    person, marketer, items = _setup(client, services)
    assert _file(client, marketer, [("render", items.render_id)]).status_code == 201
    # asked but not (yet) answered: nothing to see
    for path in (
        f"/api/v1/staff/items/render/{items.render_id}",
        f"/api/v1/staff/items/render/{items.render_id}/content",
        f"/api/v1/staff/items/photo/{items.photo_id}/content",
        f"/api/v1/renders/{items.render_id}/content",
        f"/api/v1/marketing/assets/{items.render_id}/content",
    ):
        response = client.get(path, headers=marketer)
        assert response.status_code == 404, path
    refused = audit_entries(services, action="staff.access_refused")
    assert {(e.subject_kind, e.subject_id) for e in refused} >= {
        ("render", items.render_id),
        ("photo", items.photo_id),
        ("marketing", items.render_id),
    }
    assert all(e.purpose == "marketing" for e in refused)
    assert client.get("/api/v1/marketing/assets", headers=marketer).json()["items"] == []
    # people and other staff do not reach the library at all
    support = staff(client, services, Role.SUPPORT)
    for headers in (person, support):
        assert client.get("/api/v1/marketing/assets", headers=headers).status_code == 404
        assert client.get("/api/v1/marketing/export", headers=headers).status_code == 404

    # once granted, marketing sees the item through the consent, and the view is audited
    _grant_first(client, person)
    seen = client.get(f"/api/v1/staff/items/render/{items.render_id}", headers=marketer)
    assert seen.status_code == 200 and seen.json()["basis"]["kind"] == "consent"
    viewed = audit_entries(services, action="staff.item_viewed", subject_id=items.render_id)
    assert viewed and viewed[-1].owner_id == items.owner_id and viewed[-1].purpose == "consent"


def _export_names(client: TestClient, marketer: dict[str, str]) -> tuple[list[str], list[dict[str, Any]]]:
    response = client.get("/api/v1/marketing/export", headers=marketer)
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        return archive.namelist(), manifest["assets"]


def test_withdrawal_removes_the_copy_from_the_library_and_its_export(
    client: TestClient, services: Services
) -> None:
    person, marketer, items = _setup(client, services)
    _file(client, marketer, [("render", items.render_id)])
    consent = _grant_first(client, person)["consent"]
    copy_id = client.get("/api/v1/marketing/assets", headers=marketer).json()["items"][0]["id"]
    names, entries = _export_names(client, marketer)
    assert [e["id"] for e in entries] == [copy_id] and any(copy_id in n for n in names)
    # the marketing export is on the person's own access log (the entry names them as its owner)
    own = client.post("/api/v1/me/export", headers=person)
    assert own.status_code == 200, own.text
    with zipfile.ZipFile(io.BytesIO(own.content)) as archive:
        access = json.loads(archive.read("access_log.json"))
    assert [e["subject_id"] for e in access if e["action"] == "marketing.asset_exported"] == [copy_id]
    with session_scope(services.session_factory) as session:
        copy = session.get(MarketingCopy, copy_id)
        assert copy is not None
        key = copy.storage_key
    assert services.blobs.exists(key)

    withdrawn = client.post(consent["withdraw_url"], headers=person)
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"
    logged = client.get(consent["receipt_url"], headers=person).json()["log_receipts"]
    assert [r["entry"]["action"] for r in logged] == ["consent.granted", "consent.withdrawn"]
    for log_receipt in logged:
        check_receipt(log_receipt)
    assert not withdrawn.json()["in_library"]

    assert client.get("/api/v1/marketing/assets", headers=marketer).json()["items"] == []
    names, entries = _export_names(client, marketer)
    assert entries == [] and names == ["manifest.json"]
    assert not services.blobs.exists(key) and not exists(services, MarketingCopy, copy_id)
    gone = client.get(f"/api/v1/marketing/assets/{copy_id}/content", headers=marketer)
    assert gone.status_code == 404
    assert client.get(f"/api/v1/staff/items/render/{items.render_id}", headers=marketer).status_code == 404
    # the person keeps the receipt (marked withdrawn) and a deletion receipt for the copy
    mine = client.get("/api/v1/me/consents", headers=person).json()["items"]
    assert [(c["id"], c["status"]) for c in mine] == [(consent["id"], "withdrawn")]
    assert client.get(consent["receipt_url"], headers=person).status_code == 200
    deletions = client.get("/api/v1/me/deletions", headers=person).json()["items"]
    assert any(d["id"] == copy_id and d["kind"] == "marketing" for d in deletions)
    # the person's own export lists the receipt as withdrawn and no library copy
    export = client.post("/api/v1/me/export", headers=person)
    assert export.status_code == 200, export.text
    with zipfile.ZipFile(io.BytesIO(export.content)) as archive:
        receipts = json.loads(archive.read("consent_receipts.json"))
    assert [(r["receipt"]["consentReceiptID"], r["status"], r["library_copy"]) for r in receipts] == [
        (consent["id"], "withdrawn", None)
    ]
    # withdrawing again changes nothing
    assert client.post(consent["withdraw_url"], headers=person).status_code == 200


def test_a_held_copy_is_hidden_at_withdrawal_and_swept_once_the_hold_ends(
    client: TestClient, services: Services
) -> None:
    person, marketer, items = _setup(client, services)
    _file(client, marketer, [("render", items.render_id)])
    consent = _grant_first(client, person)["consent"]
    copy_id = client.get("/api/v1/marketing/assets", headers=marketer).json()["items"][0]["id"]
    admin = staff(client, services, Role.ADMIN)
    with session_scope(services.session_factory) as session:
        hold = holds.place_hold(
            session,
            scope=HoldScope.ITEM,
            owner_id=items.owner_id,
            kind="marketing",
            item_id=copy_id,
            reason="litigation",
            ends_at=utcnow() + timedelta(days=30),
            actor_id=user_id(services, "admin@staff.example.com"),
        )
        hold_id = hold.id
    _ = admin
    assert client.post(consent["withdraw_url"], headers=person).status_code == 200
    assert client.get("/api/v1/marketing/assets", headers=marketer).json()["items"] == []
    assert _export_names(client, marketer)[1] == []
    assert exists(services, MarketingCopy, copy_id)  # held: kept, but out of every list
    sweeper.sweep_once(services.session_factory, services.blobs, settings=services.settings)
    assert exists(services, MarketingCopy, copy_id)
    with session_scope(services.session_factory) as session:
        holds.release_hold(session, hold_id=hold_id, actor_id=None)
    sweeper.sweep_once(services.session_factory, services.blobs, settings=services.settings)
    assert not exists(services, MarketingCopy, copy_id)


def test_deleting_the_account_withdraws_every_consent_and_the_next_sweep_removes_copies(
    client: TestClient, services: Services
) -> None:
    person, marketer, items = _setup(client, services)
    _file(client, marketer, [("render", items.render_id), ("photo", items.photo_id)])
    _grant_first(client, person)
    copy_id = client.get("/api/v1/marketing/assets", headers=marketer).json()["items"][0]["id"]
    reauth = {**person, "X-Current-Password": PASSWORD}
    assert client.request("DELETE", "/api/v1/me", headers=reauth).status_code == 202
    assert client.get("/api/v1/marketing/assets", headers=marketer).json()["items"] == []
    sweeper.sweep_once(services.session_factory, services.blobs, settings=services.settings)
    assert not exists(services, MarketingCopy, copy_id)
    assert audit_entries(services, action="consent.withdrawn_all")


def test_requests_are_checked_and_a_changed_notice_cannot_be_granted(
    client: TestClient, services: Services
) -> None:
    person, marketer, items = _setup(client, services)
    sign_up(client, "other@example.com")
    others = add_items(services, user_id(services, "other@example.com"))
    assert _file(client, marketer, [("render", items.render_id)], notice_version="v0").json()["code"] == (
        "unknown_notice_version"
    )
    assert _file(client, marketer, [("render", items.render_id)], channels=["radio"]).json()["code"] == (
        "invalid_channels"
    )
    mixed = _file(client, marketer, [("render", items.render_id), ("render", others.render_id)])
    assert mixed.json()["code"] == "items_of_several_people"
    assert _file(client, marketer, [("model", items.model_id)]).status_code == 422
    assert _file(client, marketer, [("render", "0" * 32)]).status_code == 404
    assert _file(client, marketer, [("render", items.render_id)]).status_code == 201
    request = client.get("/api/v1/me/consent-requests", headers=person).json()["items"][0]
    stale = client.post(
        f"/api/v1/me/consent-requests/{request['id']}/items/{request['items'][0]['id']}/grant",
        json={"notice_version": "mk-2025-01"},
        headers=person,
    )
    assert stale.status_code == 409 and stale.json()["code"] == "notice_changed"
    # another person cannot answer it
    other = client.post(
        "/api/v1/auth/token", json={"email": "other@example.com", "password": "correct horse battery staple"}
    )
    other_headers = {"Authorization": f"Bearer {other.json()['access_token']}"}
    foreign = client.post(
        f"/api/v1/me/consent-requests/{request['id']}/items/{request['items'][0]['id']}/grant",
        json={"notice_version": NOTICE},
        headers=other_headers,
    )
    assert foreign.status_code == 404


def test_the_consent_page_says_what_a_withdrawal_reaches_and_what_it_cannot(client: TestClient) -> None:
    from tests.web.test_pages import page_sign_up

    page_sign_up(client, "reach@example.com")
    text = client.get("/consent").text
    assert "bucket versions" in text and "marketing library" in text
    assert "backups" in text and "already exported" in text
