"""Content policy, prompt screening, reports and trust & safety cases: notice, cure, revocation, appeal."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from petportrait.accounts.models import Role
from petportrait.clock import Clock
from petportrait.retention.receipt_check import check_receipt
from petportrait.rights import policy
from petportrait.services import build_registry
from petportrait.web.app import Services, create_app
from tests.conftest import sign_up
from tests.rights.helpers import add_items, audit_entries, staff, user_id

DAY = timedelta(days=1)


def _licensed(client: TestClient, services: Services) -> tuple[dict[str, str], Any, str]:
    person = sign_up(client, "owner@example.com")
    items = add_items(services, user_id(services, "owner@example.com"))
    response = client.get(f"/api/v1/renders/{items.render_id}/content", headers=person)
    assert response.status_code == 200
    licence_id = client.get("/api/v1/me/licences", headers=person).json()["items"][0]["id"]
    return person, items, licence_id


def _case_with_notice(client: TestClient, ts: dict[str, str], licence_id: str) -> dict[str, Any]:
    report = client.post(
        "/api/v1/reports",
        json={
            "url": f"https://portraits.example.net/licences/{licence_id}",
            "reason": "gore",
            "details": "blood",
        },
    )
    assert report.status_code == 201, report.text
    opened = client.post(
        "/api/v1/staff/cases",
        json={"report_id": report.json()["id"], "policy_clause": "C3", "facts": "The portrait shows gore."},
        headers=ts,
    )
    assert opened.status_code == 201, opened.text
    case_id = opened.json()["id"]
    noticed = client.post(
        f"/api/v1/staff/cases/{case_id}/notice",
        json={"how_to_fix": "Delete the portrait or stop displaying it, then reply to this notice."},
        headers=ts,
    )
    assert noticed.status_code == 201, noticed.text
    return noticed.json()


def test_the_content_policy_is_served_with_its_version(client: TestClient) -> None:
    body = client.get("/api/v1/content-policy").json()
    assert body["version"] == policy.POLICY_VERSION
    assert [c["id"] for c in body["clauses"]][:3] == ["C1", "C2", "C3"]
    assert "14 days" in body["cure_and_appeal"] and body["licence_terms"]["version"]
    assert "will not assert its copyright" in body["licence_terms"]["no_assertion"]


def test_the_texts_state_the_configured_cure_period(services: Services) -> None:
    settings = services.settings.model_copy(
        update={"rights": services.settings.rights.model_copy(update={"cure_days": 21.0})}
    )
    text = str(policy.as_document(settings)["cure_and_appeal"])
    assert "(21 days unless" in text and "14 days" not in text


def test_prompts_with_refused_terms_or_refused_by_a_classifier_are_not_rendered(
    client: TestClient, services: Services
) -> None:
    person = sign_up(client, "owner@example.com")
    items = add_items(services, user_id(services, "owner@example.com"))
    url = f"/api/v1/models/{items.model_id}/renders"
    for prompt in ("a NUDE portrait of {pet}", "{pet} covered in gore!", "{pet}, Nüde"):
        refused = client.post(url, json={"prompt": prompt}, headers=person)
        assert refused.status_code == 422, prompt
        assert refused.json()["code"] == "prompt_refused" and refused.json()["policy_version"]
    screen = policy.classifier_screen("logos", lambda text: "asks for a logo" if "logo" in text else None)
    screened = dataclasses.replace(services, registry=build_registry(screens={"logos": screen}))
    with TestClient(create_app(services=screened), raise_server_exceptions=False) as other:
        refused = other.post(url, json={"prompt": "{pet} with a brand logo"}, headers=person)
        assert refused.status_code == 422 and refused.json()["classifier"] == "logos", refused.text
        assert other.post(url, json={"prompt": "{pet} in a garden"}, headers=person).status_code == 202
    # the deployment without that screen renders the same prompt
    assert client.post(url, json={"prompt": "{pet} with a brand logo"}, headers=person).status_code == 202
    # words that merely contain a refused term pass the screen (e.g. "nudge")
    policy.screen_prompt("{pet} gives a gentle nudge", services.settings)


def test_reports_by_licence_id_or_link_from_anyone(client: TestClient, services: Services) -> None:
    _person, _items, licence_id = _licensed(client, services)
    by_id = client.post("/api/v1/reports", json={"licence_id": licence_id, "reason": "rights"})
    by_link = client.post(
        "/api/v1/reports", json={"url": f"http://host/api/v1/licences/{licence_id}", "reason": "other"}
    )
    assert by_id.status_code == by_link.status_code == 201
    assert client.post("/api/v1/reports", json={"url": "http://host/cats", "reason": "other"}).json()[
        "code"
    ] == ("report_target_unknown")
    assert client.post("/api/v1/reports", json={"licence_id": licence_id, "reason": "meh"}).status_code == 422
    ts = staff(client, services, Role.TRUST_SAFETY)
    assert len(client.get("/api/v1/staff/reports", headers=ts).json()["items"]) == 2
    marketer = staff(client, services, Role.MARKETING)
    assert client.get("/api/v1/staff/reports", headers=marketer).status_code == 404


def test_cured_on_day_13_keeps_the_rights(
    client: TestClient, services: Services, frozen_clock: Clock
) -> None:
    person, items, licence_id = _licensed(client, services)
    ts = staff(client, services, Role.TRUST_SAFETY)
    case = _case_with_notice(client, ts, licence_id)
    notices = client.get("/api/v1/me/notices", headers=person).json()["items"]
    assert len(notices) == 1
    notice = notices[0]
    statement = notice["statement"]
    assert statement["facts"] == "The portrait shows gore." and statement["policy"]["clause"] == "C3"
    assert "revoked" in statement["consequence"] and notice["how_to_fix"].startswith("Delete")
    assert notice["deadline"] == case["cure_deadline"] and notice["id"] in notice["how_to_appeal"]
    frozen_clock.advance(13 * DAY)
    assert (
        client.post(
            f"/api/v1/me/notices/{notice['id']}/reply", json={"message": "Fixed."}, headers=person
        ).status_code
        == 200
    )
    cured = client.post(f"/api/v1/staff/cases/{case['id']}/cured", json={"note": "removed"}, headers=ts)
    assert cured.status_code == 200 and cured.json()["state"] == "cured"
    frozen_clock.advance(2 * DAY)  # day 15
    assert client.post("/api/v1/staff/cases/enforce", headers=ts).json() == {"revoked": 0}
    assert client.get(f"/api/v1/licences/{licence_id}").json()["status"] == "active"
    assert client.get(f"/api/v1/renders/{items.render_id}/content", headers=person).status_code == 200
    kinds = [
        e["kind"] for e in client.get("/api/v1/me/notices", headers=person).json()["items"][0]["timeline"]
    ]
    assert kinds == ["opened", "notice_sent", "owner_replied", "cured"]
    # the decision, like every step of the case, comes with a receipt of the transparency log
    receipts = client.get("/api/v1/me/notices", headers=person).json()["items"][0]["audit_receipts"]
    decision = client.get(receipts[-1], headers=person).json()
    assert decision["entry"]["action"] == "case.cured"
    check_receipt(decision)


def test_uncured_by_day_15_revokes_the_licence_and_refuses_downloads(
    client: TestClient, services: Services, frozen_clock: Clock
) -> None:
    person, items, licence_id = _licensed(client, services)
    ts = staff(client, services, Role.TRUST_SAFETY)
    case = _case_with_notice(client, ts, licence_id)
    # during the cure period the rights stay in force and cannot be revoked early
    early = client.post(
        f"/api/v1/staff/cases/{case['id']}/decide", json={"outcome": "revoke", "reasons": "now"}, headers=ts
    )
    assert early.status_code == 409 and early.json()["code"] == "cure_period_running"
    frozen_clock.advance(14 * DAY - timedelta(minutes=1))
    assert client.get(f"/api/v1/renders/{items.render_id}/content", headers=person).status_code == 200
    frozen_clock.advance(DAY + timedelta(minutes=1))  # day 15
    refused = client.get(f"/api/v1/renders/{items.render_id}/content", headers=person)
    assert refused.status_code == 451 and refused.json()["code"] == "licence_revoked"
    public = client.get(f"/api/v1/licences/{licence_id}").json()
    assert public["status"] == "revoked" and public["revoked_by_case"]["id"] == case["id"]
    assert "This licence was revoked" in client.get(f"/licences/{licence_id}").text
    late = client.post(f"/api/v1/staff/cases/{case['id']}/cured", json={}, headers=ts)
    assert late.status_code == 409 and late.json()["code"] == "case_not_curable"
    notices = client.get("/api/v1/me/notices", headers=person).json()["items"]
    assert notices[0]["kind"] == "revocation"
    assert "appeal" in notices[0]["how_to_appeal"].lower()
    actions = [e.action for e in audit_entries(services, action="case.revoked", subject_id=items.render_id)]
    assert actions == ["case.revoked"]


def test_clearly_illegal_revokes_at_once_with_notice(client: TestClient, services: Services) -> None:
    person, items, licence_id = _licensed(client, services)
    ts = staff(client, services, Role.TRUST_SAFETY)
    opened = client.post(
        "/api/v1/staff/cases",
        json={"licence_id": licence_id, "policy_clause": "C7", "facts": "Abusive imagery."},
        headers=ts,
    ).json()
    marked = client.post(
        f"/api/v1/staff/cases/{opened['id']}/clearly-illegal", json={"facts": "Clearly abusive."}, headers=ts
    )
    assert (
        marked.status_code == 200 and marked.json()["state"] == "revoked" and marked.json()["clearly_illegal"]
    )
    assert client.get(f"/api/v1/renders/{items.render_id}/content", headers=person).status_code == 451
    notice = client.get("/api/v1/me/notices", headers=person).json()["items"][0]
    assert notice["kind"] == "revocation" and "at once" in notice["statement"]["consequence"]
    assert notice["statement"]["facts"] == "Clearly abusive."


def test_an_appeal_reopens_the_case_and_reinstating_restores_the_licence(
    client: TestClient, services: Services
) -> None:
    person, items, licence_id = _licensed(client, services)
    ts = staff(client, services, Role.TRUST_SAFETY)
    opened = client.post(
        "/api/v1/staff/cases",
        json={"licence_id": licence_id, "policy_clause": "C7", "facts": "x"},
        headers=ts,
    ).json()
    client.post(f"/api/v1/staff/cases/{opened['id']}/clearly-illegal", json={"facts": "x"}, headers=ts)
    notice_id = client.get("/api/v1/me/notices", headers=person).json()["items"][0]["id"]
    appealed = client.post(
        f"/api/v1/me/notices/{notice_id}/appeal",
        json={"statement": "It is a painting of a cat."},
        headers=person,
    )
    assert appealed.json()["state"] == "appealed"
    assert client.get(f"/api/v1/staff/cases/{opened['id']}", headers=ts).json()["state"] == "appealed"
    decided = client.post(
        f"/api/v1/staff/cases/{opened['id']}/decide",
        json={"outcome": "reinstate", "reasons": "Mistaken report."},
        headers=ts,
    )
    assert decided.status_code == 200 and decided.json()["state"] == "dismissed"
    assert client.get(f"/api/v1/licences/{licence_id}").json()["status"] == "active"
    assert client.get(f"/api/v1/renders/{items.render_id}/content", headers=person).status_code == 200
    timeline = [
        e["kind"] for e in client.get("/api/v1/me/notices", headers=person).json()["items"][0]["timeline"]
    ]
    assert timeline == ["opened", "revoked", "appealed", "decided_reinstate"]
    audited = {e.action for e in audit_entries(services, action="case.appealed")}
    assert audited == {"case.appealed"}
    # the person sees every step in their own access log too
    owner_entries = [
        e for e in audit_entries(services, action="case.decided_reinstate") if e.owner_id == items.owner_id
    ]
    assert owner_entries


def test_only_trust_and_safety_run_cases(client: TestClient, services: Services) -> None:
    person, _items, licence_id = _licensed(client, services)
    body = {"licence_id": licence_id, "policy_clause": "C3", "facts": "x"}
    for headers in (person, staff(client, services, Role.SUPPORT), staff(client, services, Role.ADMIN)):
        assert client.post("/api/v1/staff/cases", json=body, headers=headers).status_code == 404
    ts = staff(client, services, Role.TRUST_SAFETY)
    assert client.post("/api/v1/staff/cases", json={**body, "policy_clause": "Z9"}, headers=ts).json()[
        "code"
    ] == ("unknown_clause")


def test_a_fix_claimed_in_time_stops_automatic_revocation_until_staff_decide(
    client: TestClient, services: Services, frozen_clock: Clock
) -> None:
    person, items, licence_id = _licensed(client, services)
    ts = staff(client, services, Role.TRUST_SAFETY)
    case = _case_with_notice(client, ts, licence_id)
    notice = client.get("/api/v1/me/notices", headers=person).json()["items"][0]
    replied = client.post(
        f"/api/v1/me/notices/{notice['id']}/reply",
        json={"message": "Fixed, here is the proof."},
        headers=person,
    )
    assert replied.status_code == 200  # day 0 of the notice
    notices = client.get("/api/v1/me/notices", headers=person).json()["items"]
    told = next(n for n in notices if n["kind"] == "fix_claimed")  # same instant as the first: any order
    assert "stays in force" in told["statement"]["consequence"]
    frozen_clock.advance(20 * DAY)  # past the 14-day deadline, and nobody has looked yet
    assert client.post("/api/v1/staff/cases/enforce", headers=ts).json() == {"revoked": 0}
    assert client.get(f"/api/v1/licences/{licence_id}").json()["status"] == "active"
    assert client.get(f"/api/v1/renders/{items.render_id}/content", headers=person).status_code == 200
    # staff read the reply and find it is not fixed: only now is the licence revoked, with notice
    decided = client.post(
        f"/api/v1/staff/cases/{case['id']}/decide",
        json={"outcome": "revoke", "reasons": "The portrait is still displayed."},
        headers=ts,
    )
    assert decided.status_code == 200 and decided.json()["state"] == "revoked", decided.text
    assert client.get(f"/api/v1/licences/{licence_id}").json()["status"] == "revoked"
    latest = client.get("/api/v1/me/notices", headers=person).json()["items"][0]
    assert (
        latest["kind"] == "decision_revoke"
        and "still breaks the policy" in latest["statement"]["consequence"]
    )
