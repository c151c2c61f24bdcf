from __future__ import annotations

from fastapi.testclient import TestClient


def test_healthz_reports_database_and_storage(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] and body["storage"]["ok"]


def test_openapi_lists_the_kept_paths(client: TestClient) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    for path in [
        "/api/v1/accounts",
        "/api/v1/auth/token",
        "/api/v1/me",
        "/api/v1/pets",
        "/api/v1/pets/{pet_id}",
        "/api/v1/pets/{pet_id}/photos",
        "/api/v1/photos/{photo_id}",
        "/api/v1/photos/{photo_id}/content",
    ]:
        assert path in spec["paths"], path


def test_unknown_path_and_method_are_problem_json(client: TestClient) -> None:
    missing = client.get("/api/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    wrong = client.put("/api/v1/pets")
    assert wrong.status_code == 405 and wrong.json()["code"] == "method_not_allowed"
