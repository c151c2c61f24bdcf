from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from petportrait.accounts.models import ApiToken, User
from petportrait.clock import Clock
from petportrait.web.app import Services
from tests.conftest import PASSWORD, sign_up


def test_sign_up_sign_in_and_me(client: TestClient) -> None:
    headers = sign_up(client, "Carol@Example.com")
    me = client.get("/api/v1/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["email"] == "carol@example.com"
    assert me.json()["role"] == "user"


def test_passwords_are_stored_as_argon2id_and_tokens_as_hashes(
    client: TestClient, services: Services
) -> None:
    response = client.post("/api/v1/accounts", json={"email": "d@example.com", "password": PASSWORD})
    assert response.status_code == 202
    token = client.post("/api/v1/auth/token", json={"email": "d@example.com", "password": PASSWORD}).json()
    with services.session_factory() as session:
        user = session.scalars(select(User)).one()
        assert user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash
        stored = session.scalars(select(ApiToken)).one()
        assert token["access_token"] not in stored.token_hash
        assert len(stored.token_hash) == 64


def test_sign_up_answers_the_same_whether_or_not_the_email_has_an_account(
    client: TestClient, services: Services
) -> None:
    sign_up(client, "e@example.com")
    taken = client.post("/api/v1/accounts", json={"email": "E@example.com", "password": "another password"})
    fresh = client.post("/api/v1/accounts", json={"email": "new@example.com", "password": PASSWORD})
    assert taken.status_code == fresh.status_code == 202
    assert taken.headers["content-type"] == fresh.headers["content-type"]
    assert set(taken.json()) == set(fresh.json()) == {"email", "detail"}
    assert taken.json()["detail"] == fresh.json()["detail"]
    # nothing changed for the existing account: its own password still signs in, the other does not
    assert (
        client.post("/api/v1/auth/token", json={"email": "e@example.com", "password": PASSWORD}).status_code
        == 200
    )
    other = client.post("/api/v1/auth/token", json={"email": "e@example.com", "password": "another password"})
    assert other.status_code == 401
    with services.session_factory() as session:
        assert len(session.scalars(select(User).where(User.email == "e@example.com")).all()) == 1


def test_short_password_and_bad_email_are_validation_errors(client: TestClient) -> None:
    short = client.post("/api/v1/accounts", json={"email": "f@example.com", "password": "short"})
    assert short.status_code == 422 and short.json()["code"] == "validation_error"
    bad = client.post("/api/v1/accounts", json={"email": "not-an-email", "password": PASSWORD})
    assert bad.status_code == 422 and "email" in bad.json()["detail"]


def test_wrong_password_and_unknown_email_look_the_same(client: TestClient) -> None:
    sign_up(client, "g@example.com")
    wrong = client.post("/api/v1/auth/token", json={"email": "g@example.com", "password": "wrong password!"})
    unknown = client.post("/api/v1/auth/token", json={"email": "nobody@example.com", "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["code"] == unknown.json()["code"] == "invalid_credentials"


def test_sign_in_is_throttled_after_repeated_failures(client: TestClient) -> None:
    sign_up(client, "h@example.com")
    for _ in range(4):  # the sign-up's own sign-in was cleared by its success; 5 per minute per address
        r = client.post("/api/v1/auth/token", json={"email": "h@example.com", "password": "wrong password!"})
        assert r.status_code == 401
    r = client.post("/api/v1/auth/token", json={"email": "h@example.com", "password": "wrong password!"})
    assert r.status_code == 401
    blocked = client.post("/api/v1/auth/token", json={"email": "h@example.com", "password": PASSWORD})
    assert blocked.status_code == 429
    assert blocked.headers["content-type"].startswith("application/problem+json")
    assert blocked.json()["code"] == "too_many_attempts"
    assert 1 <= int(blocked.headers["retry-after"]) <= 60


def test_missing_wrong_and_revoked_tokens_are_refused(client: TestClient) -> None:
    assert client.get("/api/v1/me").json()["code"] == "not_authenticated"
    bad = client.get("/api/v1/me", headers={"Authorization": "Bearer pp_nope"})
    assert bad.status_code == 401 and bad.json()["code"] == "invalid_token"
    basic = client.get("/api/v1/me", headers={"Authorization": "Basic abc"})
    assert basic.status_code == 401 and basic.json()["code"] == "invalid_token"
    headers = sign_up(client, "j@example.com")
    assert client.delete("/api/v1/auth/token", headers=headers).status_code == 204
    revoked = client.get("/api/v1/me", headers=headers)
    assert revoked.status_code == 401 and revoked.json()["code"] == "invalid_token"


def test_expired_token_is_refused(client: TestClient, frozen_clock: Clock) -> None:
    from datetime import timedelta

    headers = sign_up(client, "k@example.com")
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    frozen_clock.advance(timedelta(days=91))
    expired = client.get("/api/v1/me", headers=headers)
    assert expired.status_code == 401 and expired.json()["code"] == "invalid_token"


def test_tokens_are_listed_and_revocable_only_by_their_owner(client: TestClient) -> None:
    alice = sign_up(client, "l@example.com")
    bob = sign_up(client, "m@example.com")
    tokens = client.get("/api/v1/me/tokens", headers=alice).json()["items"]
    assert len(tokens) == 1 and "token_hash" not in tokens[0]
    assert client.delete(f"/api/v1/me/tokens/{tokens[0]['id']}", headers=bob).status_code == 404
    assert client.get("/api/v1/me", headers=alice).status_code == 200


def test_malformed_json_is_a_clear_400(client: TestClient) -> None:
    response = client.post(
        "/api/v1/accounts",
        content=b'{"email": "x@example.com", "password":',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_json"


def test_unknown_fields_are_refused(client: TestClient) -> None:
    response = client.post(
        "/api/v1/accounts", json={"email": "n@example.com", "password": PASSWORD, "role": "admin"}
    )
    assert response.status_code == 422
