"""`retention check` names each residue of the data inventory's rules when one is planted, and is clean
without them: a test per kind of residue, each planted the way a forgotten code path would leave it."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from petportrait.db import new_id, session_scope
from petportrait.idempotency import IdempotencyRecord
from petportrait.lifecycle.check import run_check
from petportrait.notifications.models import OutboxMessage, OutboxState
from petportrait.retention import audit, lineage
from petportrait.retention.models import Tombstone
from petportrait.web.app import Services
from tests.lifecycle.helpers import add_user


def _problems(services: Services, **kwargs: object) -> dict[str, list[str]]:
    with services.session_factory() as session:
        report = run_check(session, services.blobs, settings=services.settings, **kwargs)  # type: ignore[arg-type]
    found: dict[str, list[str]] = {}
    for f in report.findings:
        found.setdefault(f.problem, []).append(f.kind)
    return found


def _answer(session: object, *, path: str, body: bytes | None, owner_id: str | None, now: datetime) -> str:
    row = IdempotencyRecord(
        scope=f"user:{owner_id}" if owner_id else f"anon:{new_id()}",
        key=new_id(),
        owner_id=owner_id,
        fingerprint="0" * 64,
        method="POST",
        path=path,
        state="done",
        status=200,
        headers=[],
        body=body,
        created_at=now,
        expires_at=now + timedelta(hours=24),
    )
    session.add(row)  # type: ignore[attr-defined]
    session.flush()  # type: ignore[attr-defined]
    return str(row.id)


def _message(session: object, *, user_id: str, address: str, now: datetime, error: str | None = None) -> str:
    row = OutboxMessage(
        user_id=user_id,
        to_address=address,
        kind="password_changed",
        category="security",
        message_id=f"{new_id()}@t",
        subject="s",
        text_body="t",
        html_body="h",
        state=OutboxState.PENDING.value,
        attempts=1,
        next_attempt_at=now,
        created_at=now,
        retain_until=now + timedelta(days=30),
        last_error=error,
    )
    session.add(row)  # type: ignore[attr-defined]
    session.flush()  # type: ignore[attr-defined]
    return str(row.id)


def test_a_clean_deployment_has_no_residue(services: Services, now: datetime) -> None:
    with session_scope(services.session_factory) as session:
        user = add_user(session, "clean@example.com", at=now)
        _answer(session, path="/api/v1/pets", body=b'{"id": "x"}', owner_id=user.id, now=now)
        _message(session, user_id=user.id, address="clean@example.com", now=now, error="timeout <user x>")
    (services.settings.data_dir / "outbox").mkdir(exist_ok=True)
    found = _problems(
        services, redis_keys=["huey.redis.petportrait", f"{services.settings.limits.namespace}:limits/x"]
    )
    assert found == {}


@pytest.mark.parametrize(
    "plant, problem",
    [
        ("folder", "undeclared_folder"),
        ("redis", "undeclared_key"),
        ("erased_answer", "erased_residue"),
        ("erased_message", "erased_residue"),
        ("copy_of_deleted", "orphan_copy"),
        ("eml_without_row", "orphan_mail"),
        ("address_in_error", "mail_address_in_error"),
        ("signin_answer", "kept_credentials"),
        ("export_answer", "kept_content"),
        ("hold_reason_in_chain", "hold_text_in_chain"),
    ],
)
def test_each_planted_residue_is_named(services: Services, now: datetime, plant: str, problem: str) -> None:
    keys: list[str] = []
    with session_scope(services.session_factory) as session:
        user = add_user(session, "planted.canary@example.com", at=now)
        if plant == "folder":
            (services.settings.data_dir / "exports-tmp").mkdir()
        elif plant == "redis":
            keys = ["huey.redis.petportrait", "signin:planted.canary@example.com"]
        elif plant in ("erased_answer", "erased_message"):
            if plant == "erased_answer":
                _answer(session, path="/api/v1/pets", body=b"{}", owner_id=user.id, now=now)
            else:
                _message(session, user_id=user.id, address="planted.canary@example.com", now=now)
            user.deleted_at = now
        elif plant == "copy_of_deleted":
            row_id = _answer(session, path="/api/v1/pets", body=b"{}", owner_id=user.id, now=now)
            gone = new_id()
            lineage.link(session, store="idempotency_keys", row_id=row_id, subjects=[gone])
            session.add(
                Tombstone(id=gone, kind="render", owner_id=user.id, reason="owner_deleted", purged_at=now)
            )
        elif plant == "eml_without_row":
            outbox = services.settings.outbox_dir
            outbox.mkdir(parents=True, exist_ok=True)
            (outbox / f"{new_id()}.eml").write_text("To: planted.canary@example.com\n")
        elif plant == "address_in_error":
            _message(
                session,
                user_id=user.id,
                address="planted.canary@example.com",
                now=now,
                error="SMTPRecipientsRefused: {'planted.canary@example.com': (550, b'unknown')}",
            )
        elif plant == "signin_answer":
            _answer(
                session, path="/api/v1/auth/token", body=b'{"access_token": "pp_x"}', owner_id=None, now=now
            )
        elif plant == "export_answer":
            _answer(
                session, path="/api/v1/me/export", body=b"PK\x03\x04 zip bytes", owner_id=user.id, now=now
            )
        elif plant == "hold_reason_in_chain":
            audit.record(
                session,
                action="hold.placed",
                actor_id=None,
                subject_kind="account",
                subject_id=user.id,
                owner_id=user.id,
                purpose="legal_hold",
                details={"hold_id": new_id(), "reason": "Canary Holdsworth, 12 Quay Street"},
            )
    found = _problems(services, redis_keys=keys)
    assert list(found) == [problem], found


def test_erasure_deletes_the_accounts_emailed_links_and_the_check_names_one_left(
    services: Services, now: datetime
) -> None:
    """Verification and reset links end with the account at erasure; one left behind is named."""
    from petportrait.accounts.models import EmailToken
    from petportrait.lifecycle.service import erase_account

    with session_scope(services.session_factory) as session:
        user = add_user(session, "links.canary@example.com", at=now)
        for purpose in ("verify", "reset"):
            session.add(
                EmailToken(
                    user_id=user.id,
                    purpose=purpose,
                    token_hash=new_id() + new_id(),
                    created_at=now,
                    expires_at=now + timedelta(hours=1),
                )
            )
        user_id = user.id
    with session_scope(services.session_factory) as session:
        erase_account(session, user_id=user_id, actor_id=None)
    with services.session_factory() as session:
        assert session.query(EmailToken).filter_by(user_id=user_id).count() == 0
    assert "erased_residue" not in _problems(services)
    with session_scope(services.session_factory) as session:  # a path that forgot them
        session.add(
            EmailToken(
                user_id=user_id,
                purpose="reset",
                token_hash=new_id() + new_id(),
                created_at=now,
                expires_at=now + timedelta(hours=1),
            )
        )
    assert _problems(services).get("erased_residue") == ["email_tokens"]
