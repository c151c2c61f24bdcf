"""Each rule in one place: the same render request gets the same answer through the API and the pages, and
a retention period shortened in the settings hides items at read time at once, before any sweep."""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from petportrait.clock import Clock
from petportrait.db import session_scope
from petportrait.portraits.models import Render
from petportrait.registry import Services
from petportrait.web.app import create_app
from tests.conftest import PASSWORD
from tests.lifecycle.helpers import settings_with
from tests.rights.helpers import add_items, user_id
from tests.web.test_pages import page_sign_up

CASES = [
    ({"style": "oil_painting", "prompt": "", "count": 9}, 422, "invalid_count"),
    ({"style": "", "prompt": "x" * 501, "count": 1}, 422, "prompt_too_long"),
    ({"style": "", "prompt": "a nude portrait of {pet}", "count": 1}, 422, "prompt_refused"),
    ({"style": "no_such_style", "prompt": "", "count": 1}, 422, "unknown_style"),
    ({"style": "", "prompt": "   ", "count": 1}, 422, "style_or_prompt"),
    ({"style": "oil_painting", "prompt": "", "count": 2}, 202, None),
]


def _renders(services: Services) -> int:
    with session_scope(services.session_factory) as session:
        return int(session.scalar(select(func.count()).select_from(Render)) or 0)


@pytest.mark.parametrize(("body", "status", "code"), CASES)
def test_the_api_and_the_pages_give_the_same_answer_to_the_same_request(
    client: TestClient, services: Services, body: dict[str, object], status: int, code: str | None
) -> None:
    csrf = page_sign_up(client, "same@example.com")
    items = add_items(services, user_id(services, "same@example.com"))
    token = client.post("/api/v1/auth/token", json={"email": "same@example.com", "password": PASSWORD})
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    before = _renders(services)

    api_body = {k: v for k, v in body.items() if v != ""}
    api = client.post(f"/api/v1/models/{items.model_id}/renders", json=api_body, headers=headers)
    after_api = _renders(services)
    form = {"pet_id": items.pet_id, "csrf_token": csrf, "prompt": body["prompt"], "count": str(body["count"])}
    if body["style"]:
        form["style"] = body["style"]
    page = client.post("/render", data=form, follow_redirects=False)
    after_page = _renders(services)

    assert api.status_code == status, api.text
    if code is None:
        assert page.status_code == 303 and page.headers["location"].startswith("/portraits")
        assert after_api - before == after_page - after_api == body["count"]
        return
    problem = api.json()
    assert problem["code"] == code
    assert page.status_code == status
    assert problem["detail"] in html.unescape(page.text), "the page says what the API says"
    assert after_page == after_api == before, (
        "a refused request queues nothing, whichever door it came through"
    )


def test_repeated_styles_in_one_page_request_are_rendered_once(
    client: TestClient, services: Services
) -> None:
    csrf = page_sign_up(client, "repeat@example.com")
    items = add_items(services, user_id(services, "repeat@example.com"))
    before = _renders(services)
    form = {"pet_id": items.pet_id, "csrf_token": csrf, "count": "2", "style": ["oil_painting"] * 50}
    response = client.post("/render", data=form, follow_redirects=False)
    assert response.status_code == 303
    assert _renders(services) - before == 2


@pytest.fixture
def short_client(services: Services) -> Iterator[tuple[TestClient, Services]]:
    """The app on settings whose photo and render periods were shortened to one day."""
    short = dataclasses.replace(services, settings=settings_with(services, photo_days=1, render_days=1))
    with TestClient(create_app(services=short), raise_server_exceptions=False) as test_client:
        yield test_client, short


def test_a_shortened_period_hides_items_at_read_time_at_once(
    short_client: tuple[TestClient, Services], frozen_clock: Clock
) -> None:
    client, services = short_client
    client.post("/api/v1/accounts", json={"email": "short@example.com", "password": PASSWORD})
    token = client.post("/api/v1/auth/token", json={"email": "short@example.com", "password": PASSWORD})
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    # Stored under the full policy (30 days), before the operator shortened the periods to one day.
    items = add_items(services, user_id(services, "short@example.com"), at=frozen_clock.now())

    assert client.get(f"/api/v1/photos/{items.photo_id}", headers=headers).status_code == 200
    assert client.get(f"/api/v1/renders/{items.render_id}", headers=headers).status_code == 200
    frozen_clock.advance(timedelta(days=1))
    photo = client.get(f"/api/v1/photos/{items.photo_id}", headers=headers)
    assert photo.status_code == 410 and photo.json()["code"] == "photo_expired"
    assert "(1 day)" in photo.json()["detail"]
    render = client.get(f"/api/v1/renders/{items.render_id}", headers=headers)
    assert render.status_code == 410 and render.json()["code"] == "render_expired"
    assert client.get(f"/api/v1/pets/{items.pet_id}/photos", headers=headers).json()["items"] == []
    assert client.get("/api/v1/renders", headers=headers).json()["items"] == []
    # Nothing was swept: the rows are still there, hidden by the shortened period alone.
    with session_scope(services.session_factory) as session:
        assert session.get(Render, items.render_id) is not None
