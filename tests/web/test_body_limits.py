"""Bodies parsed whole (JSON, forms) are refused with 413 problem+json while they stream, before anything
parses them; uploads keep their own, larger limit."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi.testclient import TestClient

from petportrait.web.app import Services


def test_a_large_json_body_is_refused_while_it_streams(client: TestClient, services: Services) -> None:
    limit = services.settings.security.max_json_bytes
    padding = "x" * (limit + 10)
    declared = client.post("/api/v1/auth/token", json={"email": "a@example.com", "password": padding})
    assert declared.status_code == 413 and declared.json()["code"] == "request_too_large"
    assert declared.headers["content-type"] == "application/problem+json"

    def chunks() -> Iterator[bytes]:  # no content-length: counted as it arrives
        yield b'{"email": "a@example.com", "password": "'
        for _ in range(limit // 4096 + 2):
            yield b"x" * 4096
        yield b'"}'

    streamed = client.post(
        "/api/v1/auth/token", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413 and streamed.json()["code"] == "request_too_large", streamed.text
    bare = client.post("/api/v1/accounts", content=b"{" + b" " * (limit + 10) + b"}")  # no content type
    assert bare.status_code == 413
    small = client.post("/api/v1/auth/token", json={"email": "a@example.com", "password": "wrong password"})
    assert small.status_code == 401
