"""Consent, notices and the staff console through TestClient: empty states, and each console by role only."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from petportrait.accounts import service as accounts_service
from petportrait.accounts.models import Role
from petportrait.web.app import Services
from tests.conftest import PASSWORD
from tests.web.test_pages import csrf_of, page_sign_up


@pytest.fixture(autouse=True)
def _no_style_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    from petportrait.web.pages import examples

    monkeypatch.setattr(examples, "ensure_started", lambda settings: False)


def staff(client: TestClient, services: Services, email: str, role: Role) -> str:
    """Sign in as a new staff account; returns the session's CSRF token."""
    with services.session_factory() as session:
        accounts_service.create_user(session, email=email, password=PASSWORD, role=role)
        session.commit()
    client.cookies.clear()
    form = client.get("/signin")
    response = client.post(
        "/signin",
        data={"email": email, "password": PASSWORD, "csrf_token": csrf_of(form.text)},
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/staff"
    return csrf_of(client.get("/staff/audit" if role == Role.ADMIN else "/").text)


def test_consent_and_notices_show_honest_empty_states(client: TestClient) -> None:
    page_sign_up(client, "owner@example.com")
    consent = client.get("/consent")
    assert consent.status_code == 200
    assert "No one has asked to use any of your items." in consent.text
    assert "You have not given any consent." in consent.text
    notices = client.get("/notices")
    assert notices.status_code == 200 and "You have no notices." in notices.text


@pytest.mark.parametrize(
    ("role", "home", "others"),
    [
        (Role.MARKETING, "/staff/marketing", ["/staff/support", "/staff/safety", "/staff/audit"]),
        (Role.SUPPORT, "/staff/support", ["/staff/marketing", "/staff/safety", "/staff/audit"]),
        (Role.TRUST_SAFETY, "/staff/safety", ["/staff/marketing", "/staff/support", "/staff/audit"]),
        (Role.ADMIN, "/staff/audit", ["/staff/marketing", "/staff/support", "/staff/safety"]),
    ],
)
def test_each_staff_role_sees_its_own_console_only(
    client: TestClient, services: Services, role: Role, home: str, others: list[str]
) -> None:
    staff(client, services, f"{role.value}@example.com", role)
    landing = client.get("/staff", follow_redirects=False)
    assert landing.status_code == 303 and landing.headers["location"] == home
    assert client.get(home).status_code == 200
    for path in others:
        assert client.get(path).status_code == 404, path


def test_people_without_a_staff_role_see_no_console(client: TestClient) -> None:
    page_sign_up(client, "owner@example.com")
    for path in ["/staff", "/staff/marketing", "/staff/audit"]:
        response = client.get(path)
        assert response.status_code == 404 and "There is no page here." in response.text


def test_a_marketing_request_for_unknown_items_reads_as_a_sentence(
    client: TestClient, services: Services
) -> None:
    token = staff(client, services, "marketing@example.com", Role.MARKETING)
    response = client.post(
        "/staff/marketing/requests",
        data={
            "csrf_token": token,
            "items": "portrait 0123456789abcdef0123456789abcdef",
            "purpose": "Our winter newsletter",
            "channel": ["website"],
            "notice_version": "mk-2026-11",
        },
    )
    assert response.status_code == 422
    assert "No such render." in response.text and "Check the ids" in response.text
    bad = client.post(
        "/staff/marketing/requests",
        data={"csrf_token": token, "items": "the dog picture", "purpose": "x", "channel": ["website"]},
    )
    assert bad.status_code == 422 and "Line 1 is not an item" in bad.text


def test_admin_searches_the_audit_log_and_verifies_the_chain(client: TestClient, services: Services) -> None:
    staff(client, services, "admin@example.com", Role.ADMIN)
    client.cookies.clear()
    page_sign_up(client, "owner@example.com")
    client.post("/me/export", data={"csrf_token": csrf_of(client.get("/me").text)})
    client.cookies.clear()
    form = client.get("/signin")
    client.post(
        "/signin", data={"email": "admin@example.com", "password": PASSWORD, "csrf_token": csrf_of(form.text)}
    )
    found = client.get("/staff/audit", params={"action": "export", "verify": "1"})
    assert found.status_code == 200
    assert "The chain is intact" in found.text
    assert "export" in found.text
    wrong = client.get("/staff/audit", params={"since": "yesterday"})
    assert "The date must look like 2026-11-30" in wrong.text
