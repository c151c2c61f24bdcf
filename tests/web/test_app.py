from __future__ import annotations

from fastapi.testclient import TestClient

from petportrait.errors import Gone, TooManyRequests
from petportrait.web.app import Services, create_app


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


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


def test_a_browser_gets_an_error_page_and_an_api_client_problem_json(client: TestClient) -> None:
    page = client.get("/no-such-page", headers={"Accept": BROWSER_ACCEPT})
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert '<html lang="en">' in page.text and "<title>Page not found · petportrait</title>" in page.text
    assert 'class="site-header"' in page.text  # the site's layout, with its menu
    assert "There is nothing at this address." in page.text and "Not Found" not in page.text
    assert "Vary" in page.headers and "Accept" in page.headers["Vary"]
    for accept in ("application/json", "*/*", "", "text/html;q=0.5, application/json"):
        headers = {"Accept": accept} if accept else {}
        answer = client.get("/no-such-page", headers=headers)
        assert answer.status_code == 404
        assert answer.headers["content-type"] == "application/problem+json", accept
        assert answer.json()["code"] == "not_found"


def test_an_api_error_reads_as_a_page_in_a_browser(client: TestClient) -> None:
    page = client.get("/api/v1/pets", headers={"Accept": BROWSER_ACCEPT})
    assert page.status_code == 401 and "<h1>Please sign in</h1>" in page.text
    licence = client.get("/licences/nope", headers={"Accept": BROWSER_ACCEPT})
    assert licence.status_code == 404 and "No such licence." in licence.text


def test_gone_too_many_and_internal_errors_are_pages_for_browsers(services: Services) -> None:
    app = create_app(services=services, consumer=False)

    @app.get("/boom/{status}")
    def boom(status: int) -> None:
        if status == 410:
            raise Gone("This portrait was deleted on its date.", code="render_expired")
        if status == 429:
            raise TooManyRequests("Too many uploads.", headers={"Retry-After": "30"})
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as browser:
        gone = browser.get("/boom/410", headers={"Accept": BROWSER_ACCEPT})
        assert gone.status_code == 410 and "<h1>This has been deleted</h1>" in gone.text
        assert "This portrait was deleted on its date." in gone.text
        busy = browser.get("/boom/429", headers={"Accept": BROWSER_ACCEPT})
        assert busy.status_code == 429 and busy.headers["Retry-After"] == "30"
        assert "<h1>Too many attempts</h1>" in busy.text
        broken = browser.get("/boom/500", headers={"Accept": BROWSER_ACCEPT})
        assert broken.status_code == 500 and "<h1>Something went wrong on our side</h1>" in broken.text
        assert "a bug" not in broken.text
        assert browser.get("/boom/500").json()["code"] == "internal_error"
