"""Hostile use, driven through HTTP as an attacker would: forged Host headers, raced and sprayed sign-ins,
account discovery, missing security headers, oversized provenance checks, stolen tokens (issue 13)."""

from __future__ import annotations

import io
import re
import secrets
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import c2pa
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from petportrait.cli import exposure_warning
from petportrait.clock import Clock
from petportrait.rights import provenance
from petportrait.settings import Settings
from petportrait.web.app import Services, create_app
from petportrait.web.pages import STATIC_DIR
from tests.conftest import PASSWORD, PRODUCTION_SECURITY, TEST_KEK, make_settings, sign_up
from tests.rights.helpers import add_items, user_id

TEMPLATES = Path(STATIC_DIR).parent / "templates"
WRONG = "not the password at all"


def _app(services: Services, **updates: Any) -> FastAPI:
    """An app on the test's services with some settings changed (nested sections as dicts)."""
    data = services.settings.model_dump()
    for key, value in updates.items():
        if isinstance(value, dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    settings = Settings(**data)
    return create_app(services=Services(**{**services.__dict__, "settings": settings}))


def _from(app: FastAPI, address: str) -> TestClient:
    """A client whose requests come from `address` (no lifespan: the app's state is already built)."""
    return TestClient(app, client=(address, 40000), raise_server_exceptions=False)


def _sign_in(client: TestClient, email: str, password: str) -> int:
    return client.post("/api/v1/auth/token", json={"email": email, "password": password}).status_code


# ---- finding 4: the Host header never reaches links, licences or signed manifests -------------------------


def _manifest(data: bytes, anchors: bytes) -> tuple[str | None, dict[str, Any]]:
    settings = c2pa.Settings.from_dict(
        {"verify": {"verify_trust": True}, "trust": {"trust_anchors": anchors.decode()}}
    )
    with (
        c2pa.Context(settings) as context,
        c2pa.Reader("image/png", io.BytesIO(data), context=context) as reader,
    ):
        manifest = reader.get_active_manifest()
        assert manifest is not None
        return reader.get_validation_state(), manifest


@pytest.mark.parametrize("base_url", [None, "https://portraits.example"])
def test_a_forged_host_never_reaches_a_signed_manifest_or_the_licence_json(
    services: Services, base_url: str | None
) -> None:
    # Even an operator who lets every Host through (allowed_hosts ["*"]) gets links from the settings only.
    app = _app(services, base_url=base_url, security={"allowed_hosts": ["*"]})
    client = _from(app, "198.51.100.20")
    person = sign_up(client, "owner@example.com")
    items = add_items(services, user_id(services, "owner@example.com"))
    evil = {**person, "Host": "evil.example", "X-Forwarded-Host": "evil.example"}
    download = client.get(f"/api/v1/renders/{items.render_id}/content", headers=evil)
    assert download.status_code == 200, download.text
    origin = base_url or "http://127.0.0.1:8000"
    assert download.headers["link"].startswith(f"<{origin}/licences/")
    state, manifest = _manifest(
        download.content, (provenance.keys_dir(services.settings) / "ca.pem").read_bytes()
    )
    assert state == "Trusted"
    assert "evil.example" not in str(manifest)
    licence = {a["label"]: a["data"] for a in manifest["assertions"]}["com.petportrait.licence"]
    assert licence["verify_url"].startswith(f"{origin}/licences/")
    public = client.get(f"/api/v1/licences/{licence['licence_id']}", headers={"Host": "evil.example"})
    assert public.status_code == 200 and "evil.example" not in public.text
    assert public.json()["verify_url"] == f"{origin}/licences/{licence['licence_id']}"
    mine = client.get("/api/v1/me/licences", headers=evil)
    assert mine.status_code == 200 and "evil.example" not in mine.text


def test_an_unknown_host_is_refused(client: TestClient) -> None:
    for method, path in [("GET", "/healthz"), ("GET", "/"), ("POST", "/api/v1/auth/token")]:
        response = client.request(method, path, headers={"Host": "evil.example"}, json={})
        assert response.status_code == 400, path
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "invalid_host"
        assert response.headers["x-content-type-options"] == "nosniff"
    for host in ("localhost:8000", "127.0.0.1", "testserver"):
        assert client.get("/healthz", headers={"Host": host}).status_code == 200


def test_production_answers_only_to_its_base_url_host(services: Services) -> None:
    app = _app(
        services,
        environment="production",
        base_url="https://portraits.example",
        security=PRODUCTION_SECURITY,
    )
    client = _from(app, "198.51.100.21")
    assert client.get("/healthz", headers={"Host": "portraits.example"}).status_code == 200
    for host in ("localhost", "127.0.0.1", "testserver", "evil.example"):
        assert client.get("/healthz", headers={"Host": host}).status_code == 400, host


def test_production_refuses_to_start_without_base_url_or_metrics_token(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="base_url is required in production"):
        make_settings(tmp_path, environment="production", base_url=None)
    with pytest.raises(ValidationError, match="metrics_token is required in production"):
        Settings(
            environment="production",
            data_dir=tmp_path,
            base_url="https://portraits.example",
            security={"secret_key": secrets.token_hex(32), "key_encryption_key": TEST_KEK},  # type: ignore[arg-type]
        )
    with pytest.raises(ValidationError, match="not an absolute http"):
        make_settings(tmp_path, base_url="portraits.example")


# ---- finding 5: sign-in limits that cannot be raced, sprayed, or used to lock an owner out -----------------


def _race(client: TestClient, email: str, tries: int = 30) -> Counter[int]:
    def guess(i: int) -> int:
        return _sign_in(client, email, f"{WRONG} {i}")

    with ThreadPoolExecutor(max_workers=tries) as pool:
        return Counter(pool.map(guess, range(tries)))


def test_thirty_concurrent_wrong_guesses_are_refused_beyond_the_limit_not_checked(services: Services) -> None:
    app = _app(services)
    attacker = _from(app, "198.51.100.66")
    sign_up(_from(app, "203.0.113.5"), "owner@example.com")
    counts = _race(attacker, "owner@example.com")
    print(f"sign-in race: {counts[401]} checked, {counts[429]} refused of 30")
    assert counts == Counter({401: 5, 429: 25})
    refused = attacker.post("/api/v1/auth/token", json={"email": "owner@example.com", "password": PASSWORD})
    assert refused.status_code == 429  # even the right password waits: refused before it is checked
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "too_many_attempts"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    # the owner, from their own address, is not locked out by the attacker's guesses
    assert _sign_in(_from(app, "203.0.113.5"), "owner@example.com", PASSWORD) == 200


def test_the_race_holds_on_redis_too(services: Services) -> None:
    import redis

    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/12", socket_connect_timeout=1).ping()
    except redis.exceptions.ConnectionError:
        pytest.fail("Redis is not running on 127.0.0.1:6379 (.ci/run starts it)")
    app = _app(
        services,
        limits={"storage_url": "redis://127.0.0.1:6379/12", "namespace": f"test-{secrets.token_hex(6)}"},
    )
    sign_up(_from(app, "203.0.113.6"), "owner@example.com")
    counts = _race(_from(app, "198.51.100.67"), "owner@example.com")
    assert counts == Counter({401: 5, 429: 25})


def test_spraying_one_password_over_many_emails_from_one_address_is_throttled(services: Services) -> None:
    app = _app(services, limits={"signin_per_address": "10/minute;50/hour"})
    sprayer = _from(app, "198.51.100.77")
    results = [
        sprayer.post(
            "/api/v1/auth/token",
            json={"email": f"user{i}@example.com", "password": "Summer2026!!"},
            headers={"X-Forwarded-For": f"10.0.{i}.1", "X-Real-IP": f"10.1.{i}.1"},  # ignored: not the peer
        ).status_code
        for i in range(15)
    ]
    assert results == [401] * 10 + [429] * 5
    # another address is not affected
    assert _sign_in(_from(app, "203.0.113.7"), "user1@example.com", "Summer2026!!") == 401


@pytest.fixture
def limits_on_clock(frozen_clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The limits library's in-memory windows read the controlled clock (they read time.time() of their own;
    on a fleet, Redis's clock): waiting out a window is then a step of the clock, not a sleep."""
    from limits.storage import memory

    class _ClockTime:
        def time(self) -> float:
            return frozen_clock.now().timestamp()

        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

    monkeypatch.setattr(memory, "time", _ClockTime())
    return frozen_clock


def test_delays_grow_with_repeated_failures_and_end_by_themselves(
    services: Services, limits_on_clock: Clock
) -> None:
    app = _app(services, limits={"signin_per_account_and_address": "2/2 seconds;4/1 minute"})
    owner = _from(app, "203.0.113.8")
    sign_up(owner, "owner@example.com")  # its sign-in succeeded, which cleared this address's count
    assert [_sign_in(owner, "owner@example.com", WRONG) for _ in range(2)] == [401, 401]
    first = owner.post("/api/v1/auth/token", json={"email": "owner@example.com", "password": PASSWORD})
    assert first.status_code == 429 and int(first.headers["retry-after"]) <= 2
    limits_on_clock.advance(timedelta(seconds=2.1))
    assert _sign_in(owner, "owner@example.com", PASSWORD) == 200  # the owner gets in after the delay

    sign_up(owner, "other@example.com")
    assert [_sign_in(owner, "other@example.com", WRONG) for _ in range(2)] == [401, 401]
    limits_on_clock.advance(timedelta(seconds=2.1))
    assert [_sign_in(owner, "other@example.com", WRONG) for _ in range(2)] == [401, 401]
    longer = owner.post("/api/v1/auth/token", json={"email": "other@example.com", "password": WRONG})
    assert longer.status_code == 429 and int(longer.headers["retry-after"]) > 30  # the delay grew
    assert f"Try again in {longer.headers['retry-after']} seconds" in longer.json()["detail"]


def test_the_sign_in_page_shares_the_limits_and_says_how_long_to_wait(services: Services) -> None:
    app = _app(services)
    browser = _from(app, "198.51.100.55")
    sign_up(_from(app, "203.0.113.9"), "owner@example.com")
    form = browser.get("/signin")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    fields = {"csrf_token": token.group(1), "email": "owner@example.com", "password": WRONG}
    codes = [browser.post("/signin", data=fields).status_code for _ in range(6)]
    assert codes == [401] * 5 + [429]
    refused = browser.post("/signin", data={**fields, "password": PASSWORD})
    assert refused.status_code == 429 and "Try again in" in refused.text
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    # the API from the same address is the same count
    assert _sign_in(browser, "owner@example.com", PASSWORD) == 429


def test_sign_ups_and_anonymous_reports_are_rate_limited_per_address(services: Services) -> None:
    app = _app(services, limits={"signups_per_address": "3/minute", "reports_per_address": "2/minute"})
    client = _from(app, "198.51.100.88")
    codes = [
        client.post("/api/v1/accounts", json={"email": f"n{i}@example.com", "password": PASSWORD}).status_code
        for i in range(4)
    ]
    assert codes == [202, 202, 202, 429]
    report = {"licence_id": "0" * 32, "reason": "other", "details": "spam " * 1000}
    codes = [client.post("/api/v1/reports", json=report).status_code for _ in range(3)]
    assert codes[-1] == 429 and 429 not in codes[:2]


# ---- finding 10: security headers, docs and /metrics ----------------------------------------------------


def test_every_response_carries_the_security_headers(client: TestClient) -> None:
    for path in ["/", "/signin", "/healthz", "/api/v1/me", "/api/v1/nothing", "/static/app.js", "/pets"]:
        response = client.get(path, follow_redirects=False)
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["x-frame-options"] == "DENY", path
        assert response.headers["referrer-policy"] == "same-origin", path
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self';" in csp, path
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, path
        assert "strict-transport-security" not in response.headers  # not outside production


def test_pages_carry_no_inline_script_or_handler() -> None:
    inline = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|\son[a-z]+\s*=|javascript:|<style|\sstyle=", re.I)
    found = [
        f"{path.name}: {match.group(0)}"
        for path in sorted(TEMPLATES.glob("*.html"))
        for match in inline.finditer(path.read_text())
    ]
    assert found == []


def test_production_sends_hsts_hides_the_docs_and_closes_metrics(services: Services) -> None:
    app = _app(
        services,
        environment="production",
        base_url="https://portraits.example",
        security=PRODUCTION_SECURITY,
    )
    client = TestClient(app, base_url="https://portraits.example", raise_server_exceptions=False)
    health = client.get("/healthz")
    assert health.headers["strict-transport-security"].startswith("max-age=")
    assert client.get("/api/v1/docs").status_code == 404
    assert client.get("/api/v1/openapi.json").status_code == 404
    assert client.get("/metrics").status_code == 401
    scraper = {"Authorization": "Bearer scraper-secret-token-7f3a9c1e5b2d8046"}
    assert client.get("/metrics", headers=scraper).status_code == 200


def test_the_docs_are_on_outside_production_with_their_own_policy(client: TestClient) -> None:
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200
    assert "frame-ancestors 'none'" in docs.headers["content-security-policy"]
    assert docs.headers["x-content-type-options"] == "nosniff"


# ---- finding 11: the provenance check has a size limit and a rate limit -----------------------------------


def test_provenance_verify_refuses_large_files_and_floods(services: Services) -> None:
    app = _app(services, security={"max_verify_bytes": 4096}, limits={"verify_per_address": "3/minute"})
    client = _from(app, "198.51.100.99")
    big = client.post("/api/v1/provenance/verify", content=b"\x89PNG" + b"\0" * 10_000)
    assert big.status_code == 413 and big.json()["code"] == "file_too_large"

    def chunks() -> Any:
        for _ in range(10):
            yield b"\0" * 1024

    streamed = client.post("/api/v1/provenance/verify", content=chunks())  # no Content-Length: counted
    assert streamed.status_code == 413
    small = client.post("/api/v1/provenance/verify", content=b"not a png")
    assert small.status_code == 200 and small.json()["ok"] is False
    flood = client.post("/api/v1/provenance/verify", content=b"not a png")
    assert flood.status_code == 429 and "retry-after" in flood.headers


# ---- finding 12: password change, re-authentication, development exposure ---------------------------------


def test_password_change_needs_the_current_one_and_signs_out_everything_else(client: TestClient) -> None:
    first = sign_up(client, "owner@example.com")
    token = client.post("/api/v1/auth/token", json={"email": "owner@example.com", "password": PASSWORD})
    stolen = {"Authorization": f"Bearer {token.json()['access_token']}"}
    new = "a brand new passphrase"
    wrong = client.post(
        "/api/v1/me/password", headers=stolen, json={"current_password": WRONG, "new_password": new}
    )
    assert wrong.status_code == 403 and wrong.json()["code"] == "reauth_failed"
    changed = client.post(
        "/api/v1/me/password", headers=first, json={"current_password": PASSWORD, "new_password": new}
    )
    assert changed.status_code == 200 and changed.json()["tokens_revoked"] == 1
    assert client.get("/api/v1/me", headers=stolen).status_code == 401
    assert client.get("/api/v1/me", headers=first).status_code == 200
    assert _sign_in(client, "owner@example.com", PASSWORD) == 401
    assert _sign_in(client, "owner@example.com", new) == 200


def test_a_stolen_token_cannot_delete_the_account_without_the_password(client: TestClient) -> None:
    headers = sign_up(client, "owner@example.com")
    bare = client.delete("/api/v1/me", headers=headers)
    assert bare.status_code == 403 and bare.json()["code"] == "reauth_required"
    wrong = client.request("DELETE", "/api/v1/me", headers=headers, json={"current_password": WRONG})
    assert wrong.status_code == 403 and wrong.json()["code"] == "reauth_failed"
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    done = client.request("DELETE", "/api/v1/me", headers=headers, json={"current_password": PASSWORD})
    assert done.status_code == 202
    assert client.get("/api/v1/me", headers=headers).status_code == 401


def test_guessing_the_password_with_a_stolen_token_is_rate_limited(client: TestClient) -> None:
    headers = sign_up(client, "owner@example.com")
    codes = [
        client.delete("/api/v1/me", headers={**headers, "X-Current-Password": f"{WRONG} {i}"}).status_code
        for i in range(7)
    ]
    assert codes[:5] == [403] * 5 and codes[5:] == [429, 429]


def test_a_development_server_bound_beyond_loopback_warns(tmp_path: Path) -> None:
    open_dev = make_settings(tmp_path, environment="development", host="0.0.0.0")
    warning = exposure_warning(open_dev)
    assert warning is not None and "0.0.0.0" in warning and "beyond this machine" in warning
    assert exposure_warning(make_settings(tmp_path, environment="development", host="127.0.0.1")) is None
    assert exposure_warning(make_settings(tmp_path, environment="development", host="localhost")) is None
    assert exposure_warning(make_settings(tmp_path, environment="development", host="::1")) is None


def test_production_refuses_each_unsafe_setting_with_its_own_error(tmp_path: Path) -> None:
    strong = {**PRODUCTION_SECURITY, "secret_key": secrets.token_hex(32)}
    for overrides, sentence in (
        ({"base_url": "http://portraits.example"}, "is not https"),
        ({"security": {**strong, "cookie_secure": False}}, "cookie_secure is false"),
        ({"security": {**strong, "metrics_token": "x"}}, "metrics_token is too short"),
        (
            {"security": {**PRODUCTION_SECURITY, "secret_key": "a" * 40}},
            "secret_key is too short or too predictable",
        ),
        ({"webhooks": {"allow_private_targets": True}}, "allow_private_targets is true"),
    ):
        with pytest.raises(ValidationError, match=sentence):
            make_settings(tmp_path, environment="production", **overrides)
    assert make_settings(tmp_path, environment="production").environment == "production"
