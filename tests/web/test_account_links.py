"""The web pages of the emailed links: the sign-up form answers neutrally, /verify confirms the address with
a button (a fetched link is not spent), /password-reset emails a link and /password-reset/confirm uses it."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import PASSWORD, verification_link
from tests.web.test_pages import csrf_of, page_sign_up, post_sign_up


def test_sign_up_is_neutral_and_the_verify_page_confirms_with_a_button(client: TestClient) -> None:
    first = post_sign_up(client, "owner@example.com")
    again = post_sign_up(client, "Owner@Example.com")
    assert first.status_code == again.status_code == 200
    assert "already exists" not in again.text and "Check your email" in again.text
    token = verification_link(client, "owner@example.com")
    opened = client.get(f"/verify?token={token}")  # a mail scanner fetching the link spends nothing
    assert opened.status_code == 200 and "Confirm my address" in opened.text
    confirmed = client.post("/verify", data={"token": token, "csrf_token": csrf_of(opened.text)})
    assert confirmed.status_code == 200 and "Your address is confirmed" in confirmed.text
    reused = client.post("/verify", data={"token": token, "csrf_token": csrf_of(opened.text)})
    assert reused.status_code == 422 and "used already or expired" in reused.text


def test_a_password_reset_through_the_pages_signs_out_the_old_session(client: TestClient) -> None:
    page_sign_up(client, "owner@example.com")
    assert client.get("/pets", follow_redirects=False).status_code == 200
    other = TestClient(client.app)
    form = other.get("/password-reset")
    for email in ("owner@example.com", "nobody@example.com"):
        sent = other.post("/password-reset", data={"email": email, "csrf_token": csrf_of(form.text)})
        assert sent.status_code == 200 and "If this email has an account" in sent.text
    token = verification_link(client, "owner@example.com", kind="password_reset")
    choose = other.get(f"/password-reset/confirm?token={token}")
    data = {"token": token, "password": "new passphrase!", "password_again": "new passphrase!"}
    done = other.post("/password-reset/confirm", data={**data, "csrf_token": csrf_of(choose.text)})
    assert done.status_code == 200 and "Your password is changed" in done.text
    assert client.get("/pets", follow_redirects=False).status_code == 303  # the old session is signed out
    signin = other.get("/signin")
    old = other.post(
        "/signin",
        data={"email": "owner@example.com", "password": PASSWORD, "csrf_token": csrf_of(signin.text)},
    )
    assert old.status_code == 401
