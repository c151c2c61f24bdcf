"""The rate-limit store never holds what it counts: keys are HMACs under the secret key (issue 19).

Real Redis (database 12, a namespace of this test's own), the app over HTTP from a chosen peer address.
"""

from __future__ import annotations

import hashlib
import secrets

import pytest
from fastapi.testclient import TestClient

from petportrait.ratelimit import RateLimiter
from petportrait.settings import Settings
from petportrait.web.app import Services, create_app

REDIS = "redis://127.0.0.1:6379/12"
EMAIL = f"canary-{secrets.token_hex(4)}@example.com"
ADDRESS = "198.51.100.91"


def _redis():  # type: ignore[no-untyped-def]
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.fail("no Redis on 127.0.0.1:6379 (.ci/run starts it)")
    return client


def _settings(services: Services, namespace: str, secret: str) -> Settings:
    data = services.settings.model_dump()
    data["limits"] = {**data["limits"], "storage_url": REDIS, "namespace": namespace}
    data["security"] = {**data["security"], "secret_key": secret}
    return Settings(**data)


def test_rate_limit_keys_in_redis_are_hmacs_of_the_email_and_address_under_the_secret_key(
    services: Services,
) -> None:
    redis = _redis()
    namespace = f"test-{secrets.token_hex(6)}"
    settings = _settings(services, namespace, secrets.token_hex(32))
    app = create_app(services=Services(**{**services.__dict__, "settings": settings}))
    client = TestClient(app, client=(ADDRESS, 40000), raise_server_exceptions=False)
    try:
        for _ in range(3):
            response = client.post("/api/v1/auth/token", json={"email": EMAIL, "password": "wrong password!"})
            assert response.status_code == 401
        keys = [key.decode() for key in redis.scan_iter(match=f"{namespace}*")]
        assert keys, "the attempts were counted in Redis"
        stored = " ".join(keys)
        unsalted = hashlib.sha256(EMAIL.encode()).hexdigest()
        for revealing in (EMAIL, EMAIL.split("@")[0], unsalted[:16], ADDRESS, "198.51.100"):
            assert revealing not in stored, (revealing, keys)
        limiter = RateLimiter(settings)
        assert limiter.stored_key(EMAIL) in stored and limiter.stored_key(ADDRESS) in stored
        # under another secret key the same email gives another key: the store alone cannot tell who
        other = RateLimiter(_settings(services, namespace, secrets.token_hex(32)))
        assert other.stored_key(EMAIL) not in stored
    finally:
        for key in redis.scan_iter(match=f"{namespace}*"):
            redis.delete(key)
