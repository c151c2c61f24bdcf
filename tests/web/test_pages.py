"""Web pages through TestClient: sign-up, sign-in and sign-out cookies, CSRF refusals, access control."""

from __future__ import annotations

import io
import re

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from PIL import Image

from petportrait.clock import utcnow
from petportrait.db import session_scope
from petportrait.jobs.models import Job
from petportrait.pets.models import Pet
from petportrait.portraits.models import Render
from petportrait.web.app import Services
from petportrait.web.deps import SESSION_COOKIE
from tests.conftest import PASSWORD, pet_photos, sign_up
from tests.lifecycle.helpers import add_render
from tests.rights.helpers import add_items, user_id


@pytest.fixture(autouse=True)
def _no_style_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests read pages; making the style examples (a process of its own) is for the browser tests."""
    from petportrait.web.pages import examples

    monkeypatch.setattr(examples, "ensure_started", lambda settings: False)


CSRF_INPUT = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


def csrf_of(html: str) -> str:
    found = CSRF_INPUT.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def post_sign_up(client: TestClient, email: str, form: Response | None = None) -> Response:
    """Send the sign-up form (fetched now unless given) and return the answer, not following it."""
    if form is None:
        form = client.get("/signup")
    assert form.status_code == 200
    return client.post(
        "/signup",
        data={
            "email": email,
            "password": PASSWORD,
            "password_again": PASSWORD,
            "csrf_token": csrf_of(form.text),
        },
        follow_redirects=False,
    )


def post_sign_in(client: TestClient, email: str) -> Response:
    """Send the sign-in form (fetched now) and return the answer, not following it."""
    form = client.get("/signin")
    return client.post(
        "/signin",
        data={"email": email, "password": PASSWORD, "csrf_token": csrf_of(form.text)},
        follow_redirects=False,
    )


def page_sign_up(client: TestClient, email: str) -> str:
    """Sign up through the pages (a neutral answer), then sign in; returns the session's CSRF token."""
    response = post_sign_up(client, email)
    assert response.status_code == 200 and "Check your email" in response.text, response.text
    signed_in = post_sign_in(client, email)
    assert signed_in.status_code == 303, signed_in.text
    return csrf_of(client.get("/pets").text)


def test_landing_states_the_periods(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    text = page.text
    assert "kept 30 days" in text and "kept 7 days" in text
    assert "Marketing: only with your yes" in text
    assert 'lang="en"' in text and 'name="viewport"' in text


def test_sign_in_after_sign_up_sets_a_secure_session_cookie_and_sign_out_revokes_it(
    client: TestClient,
) -> None:
    assert post_sign_up(client, "owner@example.com").status_code == 200  # neutral: no session yet
    assert client.cookies.get(SESSION_COOKIE) is None
    response = post_sign_in(client, "owner@example.com")
    assert response.status_code == 303
    cookie = next(v for k, v in response.headers.multi_items() if k == "set-cookie" and SESSION_COOKIE in v)
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Max-Age=1209600" in cookie
    secret = client.cookies.get(SESSION_COOKIE)
    assert secret and secret.startswith("pp_")
    pets = client.get("/pets")
    assert pets.status_code == 200 and "My pets" in pets.text

    out = client.post("/signout", data={"csrf_token": csrf_of(pets.text)}, follow_redirects=False)
    assert out.status_code == 303
    assert client.cookies.get(SESSION_COOKIE) is None
    # The old secret no longer works anywhere, even if someone kept it.
    api = client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert api.status_code == 401
    again = client.get("/pets", follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"].startswith("/signin")


def test_sign_in_with_a_wrong_password_reads_as_a_sentence(client: TestClient) -> None:
    sign_up(client, "owner@example.com")
    form = client.get("/signin")
    wrong = client.post(
        "/signin",
        data={"email": "owner@example.com", "password": "not the password", "csrf_token": csrf_of(form.text)},
    )
    assert wrong.status_code == 401
    assert "The email or password is wrong." in wrong.text
    assert client.cookies.get(SESSION_COOKIE) is None
    right = client.post(
        "/signin",
        data={
            "email": "owner@example.com",
            "password": PASSWORD,
            "next": "/me",
            "csrf_token": csrf_of(wrong.text),
        },
        follow_redirects=False,
    )
    assert right.status_code == 303 and right.headers["location"] == "/me"
    assert client.cookies.get(SESSION_COOKIE)


def test_sign_in_warns_before_the_pause_and_offers_a_reset(client: TestClient) -> None:
    sign_up(client, "owner@example.com")
    token = csrf_of(client.get("/signin").text)
    said = []
    for _ in range(6):
        answer = client.post(
            "/signin", data={"email": "owner@example.com", "password": "not it", "csrf_token": token}
        )
        said.append((answer.status_code, answer.text))
    assert all('href="/password-reset"' in text for _, text in said)
    assert "more tries" not in said[0][1]  # no warning while there are many tries left
    assert "You have 2 more tries before sign-in pauses" in said[2][1]
    assert "You have 1 more try before sign-in pauses" in said[3][1]
    assert "Another wrong password pauses sign-in" in said[4][1]
    assert said[5][0] == 429 and "reset your password</a> meanwhile" in said[5][1]


def test_sign_in_refuses_to_send_people_to_another_site(client: TestClient) -> None:
    sign_up(client, "owner@example.com")
    form = client.get("/signin")
    response = client.post(
        "/signin",
        data={
            "email": "owner@example.com",
            "password": PASSWORD,
            "next": "//evil.example.com/",
            "csrf_token": csrf_of(form.text),
        },
        follow_redirects=False,
    )
    assert response.headers["location"] == "/pets"


def test_forms_without_the_csrf_token_are_refused_with_a_page(client: TestClient) -> None:
    anonymous = client.post(
        "/signup", data={"email": "owner@example.com", "password": PASSWORD, "password_again": PASSWORD}
    )
    assert anonymous.status_code == 403
    assert "This form has expired" in anonymous.text and "text/html" in anonymous.headers["content-type"]

    token = page_sign_up(client, "owner@example.com")
    missing = client.post("/pets", data={"name": "Rex", "species": "dog"})
    assert missing.status_code == 403 and "This form has expired" in missing.text
    wrong = client.post("/pets", data={"name": "Rex", "species": "dog", "csrf_token": "0" * 64})
    assert wrong.status_code == 403
    assert client.get("/pets").text.count("Rex") == 0
    ok = client.post(
        "/pets", data={"name": "Rex", "species": "dog", "csrf_token": token}, follow_redirects=False
    )
    assert ok.status_code == 303 and ok.headers["location"].startswith("/pets/")


def test_a_token_from_another_session_does_not_pass(client: TestClient) -> None:
    first = page_sign_up(client, "owner@example.com")
    client.cookies.clear()
    page_sign_up(client, "other@example.com")
    response = client.post("/pets", data={"name": "Rex", "species": "dog", "csrf_token": first})
    assert response.status_code == 403


def test_cookie_authenticated_api_writes_need_the_csrf_header(client: TestClient) -> None:
    token = page_sign_up(client, "owner@example.com")
    refused = client.post("/api/v1/pets", json={"name": "Rex", "species": "dog"})
    assert refused.status_code == 403 and refused.json()["code"] == "csrf_failed"
    accepted = client.post(
        "/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers={"X-CSRF-Token": token}
    )
    assert accepted.status_code == 201
    # Reads with the cookie need no header, and bearer requests are unaffected.
    assert client.get("/api/v1/pets").status_code == 200
    bearer = sign_up(client, "api@example.com")
    client.cookies.clear()
    assert (
        client.post("/api/v1/pets", json={"name": "Tom", "species": "cat"}, headers=bearer).status_code == 201
    )


def test_pages_need_a_sign_in(client: TestClient) -> None:
    for path in ["/pets", "/styles", "/portraits", "/me", "/support"]:
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"] == f"/signin?next={path}"


def test_another_persons_pet_page_is_not_found(client: TestClient) -> None:
    token = page_sign_up(client, "owner@example.com")
    created = client.post(
        "/pets", data={"name": "Rex", "species": "dog", "csrf_token": token}, follow_redirects=False
    )
    pet_path = created.headers["location"]
    assert client.get(pet_path).status_code == 200
    client.cookies.clear()
    other = page_sign_up(client, "other@example.com")
    seen = client.get(pet_path)
    assert seen.status_code == 404 and "No such pet." in seen.text and "Rex" not in seen.text
    upload = client.post(
        f"{pet_path}/photos", data={"csrf_token": other}, files=[("files", ("a.jpg", b"x", "image/jpeg"))]
    )
    assert upload.status_code == 404
    train = client.post(f"{pet_path}/train", data={"csrf_token": other})
    assert train.status_code == 404


def test_bad_uploads_read_as_sentences(client: TestClient) -> None:
    token = page_sign_up(client, "owner@example.com")
    created = client.post(
        "/pets", data={"name": "Rex", "species": "dog", "csrf_token": token}, follow_redirects=False
    )
    pet_path = created.headers["location"]
    small = io.BytesIO()
    Image.new("RGB", (120, 90), (200, 100, 50)).save(small, format="JPEG")
    good = pet_photos("dog")[0]
    response = client.post(
        f"{pet_path}/photos",
        data={"csrf_token": token},
        files=[
            ("files", ("notes.txt", b"just some text, not a photo", "text/plain")),
            ("files", ("tiny.jpg", small.getvalue(), "image/jpeg")),
            ("files", (good.name, good.read_bytes(), "image/jpeg")),
        ],
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200, response.text
    text = response.text
    assert "1 stored, 2 not stored" in text
    assert "This file is not a photo (JPEG, PNG or WebP)." in text
    assert (
        "This photo is too small: the short side must be at least 256 pixels (this one is 120 by 90)." in text
    )
    assert "it will be deleted on" in text
    assert 'hx-swap-oob="true"' in text  # the photo grid is refreshed with the new photo


def test_render_form_errors_read_as_sentences(client: TestClient) -> None:
    token = page_sign_up(client, "owner@example.com")
    response = client.post(
        "/render", data={"csrf_token": token, "pet_id": "nope", "count": "99", "seed": "x"}
    )
    assert response.status_code == 422
    assert "Choose one of your pets." in response.text
    assert "A request renders from 1 to 8 portraits; it asked for 99." in response.text
    assert "The seed must be a whole number" in response.text


def test_delete_account_needs_the_email_and_the_password_typed(client: TestClient) -> None:
    token = page_sign_up(client, "owner@example.com")
    refused = client.post("/me/delete", data={"csrf_token": token, "confirm_email": "someone@example.com"})
    assert refused.status_code == 422 and "type your email address exactly" in refused.text
    assert client.get("/me").status_code == 200
    no_password = client.post("/me/delete", data={"csrf_token": token, "confirm_email": "owner@example.com"})
    assert no_password.status_code == 403 and "Type your current password" in no_password.text
    assert client.get("/me").status_code == 200
    form = {"csrf_token": token, "confirm_email": "owner@example.com", "current_password": PASSWORD}
    done = client.post("/me/delete", data=form)
    assert done.status_code == 200 and "Your account is deleted" in done.text
    assert client.cookies.get(SESSION_COOKIE) is None
    assert client.get("/me", follow_redirects=False).status_code == 303


def test_the_session_cookie_is_secure_when_the_settings_say_so(
    client: TestClient, services: Services
) -> None:
    services.settings.security.cookie_secure = True
    client.base_url = client.base_url.copy_with(
        scheme="https"
    )  # a browser sends Secure cookies over HTTPS only
    form = client.get("/signup")
    anon = next(v for k, v in form.headers.multi_items() if k == "set-cookie")
    assert "Secure" in anon and "HttpOnly" in anon
    post_sign_up(client, "owner@example.com", form)
    response = post_sign_in(client, "owner@example.com")
    cookie = next(v for k, v in response.headers.multi_items() if k == "set-cookie" and SESSION_COOKIE in v)
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie


def test_a_person_opens_and_closes_a_support_case_from_the_support_page(client: TestClient) -> None:
    token = page_sign_up(client, "owner@example.com")
    assert "You have no photos, models or portraits yet" in client.get("/support").text
    created = client.post(
        "/pets", data={"name": "Rex", "species": "dog", "csrf_token": token}, follow_redirects=False
    )
    pet_path = created.headers["location"]
    photos = pet_photos("dog")[:2]
    stored = client.post(
        f"{pet_path}/photos",
        data={"csrf_token": token},
        files=[("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos],
    )
    assert stored.status_code == 200, stored.text
    page = client.get("/support")
    assert page.status_code == 200 and '<a href="/support" aria-current="page">Support</a>' in page.text
    ticks = re.findall(r'name="items" value="(photo:[^"]+)"', page.text)
    assert len(ticks) == 2 and f"> Photo {photos[0].name}</label>" in page.text

    # Forms that cannot open a case say why, keep what was typed, and open nothing.
    for data, sentence in [
        ({"subject": " ", "items": ticks[:1]}, "Say what you need help with"),
        ({"subject": "The model looks wrong"}, "Tick at least one photo, model or portrait"),
        ({"subject": "The model looks wrong", "items": ["photo:nope"]}, "is gone or is not yours"),
        ({"subject": "The model looks wrong", "items": ticks[:1], "days": "30"}, "at most 7 days"),
    ]:
        refused = client.post("/support/cases", data={"csrf_token": token, **data})
        assert refused.status_code == 422 and sentence in refused.text, data
        assert "You have not opened a support case." in refused.text
    assert "The model looks wrong</textarea>" in refused.text

    opened = client.post(
        "/support/cases",
        data={"csrf_token": token, "subject": "The model looks wrong", "items": ticks[:1], "days": "3"},
        follow_redirects=False,
    )
    assert opened.status_code == 303 and opened.headers["location"] == "/support?opened=1"
    cases = client.get("/api/v1/me/support-cases", headers={"X-CSRF-Token": token}).json()["items"]
    assert len(cases) == 1 and cases[0]["open"] is True
    assert cases[0]["items"] == [{"kind": "photo", "id": ticks[0].split(":", 1)[1]}]
    shown = client.get("/support?opened=1").text
    assert "Your case is open." in shown and "open until" in shown and "Close the case now" in shown
    ticked = re.search(rf'value="{ticks[0]}"> (Photo [^<]+)</label>', page.text)
    assert ticked and f"<li>{ticked.group(1)} of Rex</li>" in shown

    # Another person can neither see nor close it.
    client.cookies.clear()
    other = page_sign_up(client, "other@example.com")
    assert "The model looks wrong" not in client.get("/support").text
    assert (
        client.post(f"/support/cases/{cases[0]['id']}/close", data={"csrf_token": other}).status_code == 404
    )
    client.cookies.clear()
    signed_in = client.post(
        "/signin",
        data={
            "email": "owner@example.com",
            "password": PASSWORD,
            "csrf_token": csrf_of(client.get("/signin").text),
        },
        follow_redirects=False,
    )
    assert signed_in.status_code == 303
    token = csrf_of(client.get("/support").text)
    closed = client.post(f"/support/cases/{cases[0]['id']}/close", data={"csrf_token": token})
    assert closed.status_code == 200 and "support can no longer look at its items" in closed.text
    assert "closed " in closed.text and "Close the case now" not in closed.text
    assert client.get("/api/v1/me/support-cases").json()["items"][0]["open"] is False


def test_portraits_are_grouped_by_pet_and_style_and_each_painting_one_shows_its_steps(
    client: TestClient, services: Services
) -> None:
    page_sign_up(client, "owner@example.com")
    items = add_items(services, user_id(services, "owner@example.com"))
    with session_scope(services.session_factory) as session:
        pet = session.get(Pet, items.pet_id)
        assert pet is not None
        painting = add_render(session, services.blobs, pet, at=utcnow(), model_id=items.model_id)
        painting.state, painting.style, painting.storage_key = "rendering", "oil_painting", None
        session.add(
            Job(
                id=painting.job_id,
                kind="render",
                owner_id=pet.owner_id,
                target_id=painting.id,
                state="running",
                progress_step=3,
                progress_total=8,
                created_at=utcnow(),
            )
        )
        ready = session.get(Render, items.render_id)
        assert ready is not None
        ready.is_preview = True
        pet_name = pet.name
    html = client.get("/portraits").text
    assert f'<h2 id="group-{items.pet_id}">{pet_name}</h2>' in html
    assert html.count('class="h4 style-heading"') == 2  # watercolour and oil painting
    assert "Painting: step 3 of 8" in html and 'max="8" value="3"' in html
    assert "they are test patterns, not pictures of your pet" in html  # a preview portrait is said plainly
    assert "data-viewer-item" in html and '<dialog id="viewer"' in html
