"""Paging on every list: `limit` (default 50, at most 100), an opaque `cursor`, `{"items", "next_cursor"}`."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from petportrait.clock import utcnow
from petportrait.web.app import Services
from tests.conftest import PASSWORD, sign_up
from tests.lifecycle.helpers import add_model, add_pet


def walk(client: TestClient, path: str, headers: dict[str, str], limit: int) -> list[list[dict[str, Any]]]:
    """Every page of a list, following next_cursor to the end."""
    pages = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        response = client.get(path, params=params, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"items", "next_cursor"}
        assert len(body["items"]) <= limit
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "paging does not end"


def test_tokens_are_paged_expire_and_can_be_revoked(client: TestClient, alice: dict[str, str]) -> None:
    for _ in range(4):  # each sign-in adds a token
        assert (
            client.post(
                "/api/v1/auth/token", json={"email": "alice@example.com", "password": PASSWORD}
            ).status_code
            == 200
        )
    pages = walk(client, "/api/v1/me/tokens", alice, limit=2)
    tokens = [t for page in pages for t in page]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert len({t["id"] for t in tokens}) == 5
    assert all(t["expires_at"] for t in tokens)  # every token expires
    created = [t["created_at"] for t in tokens]
    assert created == sorted(created, reverse=True)
    victim = tokens[0]["id"]  # the newest: not the one these requests use
    assert client.delete(f"/api/v1/me/tokens/{victim}", headers=alice).status_code == 204
    again = [t for page in walk(client, "/api/v1/me/tokens", alice, limit=100) for t in page]
    assert next(t for t in again if t["id"] == victim)["revoked_at"] is not None


def test_renders_made_together_page_without_gaps_or_repeats(
    client: TestClient, services: Services, alice: dict[str, str]
) -> None:
    user_id = client.get("/api/v1/me", headers=alice).json()["id"]
    with services.session_factory() as session:
        pet = add_pet(session, user_id, at=utcnow())
        model = add_model(session, services.blobs, pet, at=utcnow())
        session.commit()
    for _ in range(2):  # 16 renders, 8 of each sharing one created_at
        asked = client.post(
            f"/api/v1/models/{model.id}/renders", json={"style": "watercolour", "count": 8}, headers=alice
        )
        assert asked.status_code == 202
    pages = walk(client, "/api/v1/renders", alice, limit=3)
    ids = [r["id"] for page in pages for r in page]
    assert len(ids) == 16 and len(set(ids)) == 16
    assert client.get("/api/v1/renders", headers=alice).json()["next_cursor"] is None  # default 50
    pets = walk(client, "/api/v1/pets", alice, limit=1)
    assert [p["id"] for page in pets for p in page] == [pet.id]
    models = walk(client, f"/api/v1/pets/{pet.id}/models", alice, limit=1)
    assert [m["id"] for page in models for m in page] == [model.id]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/pets",
        "/api/v1/renders",
        "/api/v1/me/tokens",
        "/api/v1/me/consents",
        "/api/v1/me/consent-requests",
        "/api/v1/me/notices",
        "/api/v1/me/licences",
        "/api/v1/me/deletions",
        "/api/v1/me/support-cases",
    ],
)
def test_every_list_refuses_forged_cursors_and_oversized_pages(client: TestClient, path: str) -> None:
    headers = sign_up(client, "pager@example.com")
    first = client.get(path, headers=headers).json()
    assert set(first) == {"items", "next_cursor"} and first["next_cursor"] is None
    for bad in (
        "not-a-cursor",
        "W10",
        "eyJhIjoxfQ",
        "WyIyMDI2LTAxLTAxIiwgIngiXQ",
    ):  # junk, [], {"a":1}, naive time
        response = client.get(path, params={"cursor": bad}, headers=headers)
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["code"] == "invalid_cursor"
    for limit in (0, 101, -1):
        response = client.get(path, params={"limit": limit}, headers=headers)
        assert response.status_code == 422 and response.headers["content-type"] == "application/problem+json"
