from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from petportrait.pets.models import Pet
from petportrait.web.app import Services, create_app
from tests.conftest import sign_up


def test_a_created_pet_is_committed_before_the_answer_starts(services: Services) -> None:
    """The request's session commits when the handler returns, before the response starts, so a client's
    next request (another connection) always sees what the answer reported."""
    app = create_app(services=services)
    counts_at_start: list[int] = []

    async def probe(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def watching_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and scope["path"] == "/api/v1/pets":
                with services.session_factory() as other:
                    counts_at_start.append(other.scalar(select(func.count()).select_from(Pet)) or 0)
            await send(message)

        await app(scope, receive, watching_send)

    probe.state = app.state  # type: ignore[attr-defined]  # what the sign-up helper reads the outbox through
    with TestClient(probe) as client:  # type: ignore[arg-type]
        headers = sign_up(client, "commit@example.com")
        response = client.post("/api/v1/pets", json={"name": "Nova", "species": "cat"}, headers=headers)
    assert response.status_code == 201
    assert counts_at_start == [1]
