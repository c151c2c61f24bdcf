"""Verified addresses, password reset and one form per address, through HTTP; links read from the outbox."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from petportrait.clock import Clock
from petportrait.notifications.models import OutboxMessage
from petportrait.web.app import Services
from tests.conftest import PASSWORD, verification_link

NEW_PASSWORD = "a brand new passphrase"


def kinds(services: Services, address: str) -> list[str]:
    with services.session_factory() as session:
        return list(
            session.scalars(
                select(OutboxMessage.kind)
                .where(OutboxMessage.to_address == address)
                .order_by(OutboxMessage.created_at, OutboxMessage.id)
            )
        )


def token(client: TestClient, email: str, password: str = PASSWORD) -> dict[str, str]:
    answer = client.post("/api/v1/auth/token", json={"email": email, "password": password})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_an_unverified_account_works_but_gets_only_the_verification_mail(
    client: TestClient, services: Services
) -> None:
    assert (
        client.post("/api/v1/accounts", json={"email": "ann@example.com", "password": PASSWORD}).status_code
        == 202
    )
    ann = token(client, "ann@example.com")  # integrators' flows keep working
    assert client.post("/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers=ann).status_code == 201
    assert client.get("/api/v1/me", headers=ann).json()["email_verified_at"] is None
    assert kinds(services, "ann@example.com") == ["verify_email"]  # no "new sign-in" with the token's name

    link = verification_link(client, "ann@example.com")
    assert client.post("/api/v1/accounts/verify", json={"token": link + "x"}).json()["code"] == "invalid_link"
    assert client.post("/api/v1/accounts/verify", json={"token": link}).status_code == 200
    again = client.post("/api/v1/accounts/verify", json={"token": link})
    assert again.status_code == 422 and again.json()["code"] == "invalid_link"  # single use
    assert client.get("/api/v1/me", headers=ann).json()["email_verified_at"] is not None
    token(client, "ann@example.com")
    assert kinds(services, "ann@example.com") == ["verify_email", "token_created"]


def test_a_sign_up_for_a_taken_address_answers_the_same_and_tells_the_owner(
    client: TestClient, services: Services
) -> None:
    first = client.post("/api/v1/accounts", json={"email": "Élodie@Exämple.com", "password": PASSWORD})
    client.post(
        "/api/v1/accounts/verify", json={"token": verification_link(client, "élodie@xn--exmple-cua.com")}
    )
    # the same mailbox spelt another way: decomposed accent, punycode domain, capitals
    second = client.post(
        "/api/v1/accounts", json={"email": "E\u0301LODIE@xn--exmple-cua.com", "password": "another password!"}
    )
    third = client.post(
        "/api/v1/accounts", json={"email": "élodie@EXÄMPLE.com", "password": "yet another one"}
    )
    assert first.status_code == second.status_code == third.status_code == 202
    assert first.json()["detail"] == second.json()["detail"]
    assert kinds(services, "élodie@xn--exmple-cua.com") == ["verify_email", "signup_attempted"]  # one a day
    token(client, "élodie@exämple.com")  # every spelling signs in to the one account
    token(client, "E\u0301lodie@XN--EXMPLE-CUA.COM")


def test_password_reset_is_neutral_single_use_and_signs_out_every_session(
    client: TestClient, services: Services, frozen_clock: Clock
) -> None:
    client.post("/api/v1/accounts", json={"email": "bo@example.com", "password": PASSWORD})
    old = token(client, "bo@example.com")
    known = client.post("/api/v1/auth/password-reset", json={"email": "bo@example.com"})
    unknown = client.post("/api/v1/auth/password-reset", json={"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 202 and known.json() == unknown.json()
    link = verification_link(client, "bo@example.com", kind="password_reset")

    frozen_clock.advance(timedelta(minutes=31))  # a link lives 30 minutes
    late = client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": link, "new_password": NEW_PASSWORD}
    )
    assert late.status_code == 422 and late.json()["code"] == "invalid_link"
    client.post("/api/v1/auth/password-reset", json={"email": "BO@example.com"})
    link = verification_link(client, "bo@example.com", kind="password_reset")
    done = client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": link, "new_password": NEW_PASSWORD}
    )
    assert done.status_code == 200, done.text
    assert client.get("/api/v1/me", headers=old).status_code == 401  # every session signed out
    again = client.post("/api/v1/auth/password-reset/confirm", json={"token": link, "new_password": "x" * 12})
    assert again.status_code == 422
    assert (
        client.post("/api/v1/auth/token", json={"email": "bo@example.com", "password": PASSWORD}).status_code
        == 401
    )
    me = client.get("/api/v1/me", headers=token(client, "bo@example.com", NEW_PASSWORD)).json()
    assert me["email_verified_at"] is not None  # the link reached the mailbox
    with services.session_factory() as session:
        stored = session.scalars(
            select(OutboxMessage.kind).where(OutboxMessage.kind == "password_changed")
        ).all()
    assert stored == ["password_changed"]

    answers = [client.post("/api/v1/auth/password-reset", json={"email": "bo@example.com"}) for _ in range(6)]
    assert answers[-1].status_code == 429 and answers[-1].json()["code"] == "too_many_attempts"
