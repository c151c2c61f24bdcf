"""Migration 0520 on a database with old addresses: each is rewritten in its normalised form, existing
accounts count as verified, and accounts that would share one mailbox are left as they were and reported
(by id, never by address)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from petportrait import migrate


def test_addresses_are_normalised_and_collisions_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    migrate.upgrade(engine, "0370")
    rows = [
        ("u1", "Élodie@Exämple.com"),  # alone: rewritten
        ("u2", "ann@xn--exmple-cua.com"),  # these two are one mailbox
        ("u3", "Ann@exämple.com"),
    ]
    with engine.begin() as db:
        for user_id, email in rows:
            db.execute(
                text(
                    "INSERT INTO users (id, email, password_hash, role, created_at) "
                    "VALUES (:i, :e, 'x', 'user', '2026-01-01 00:00:00.000000')"
                ),
                {"i": user_id, "e": email},
            )
    with caplog.at_level(logging.WARNING):
        migrate.upgrade(engine)
    with engine.connect() as db:
        found = dict(db.execute(text("SELECT id, email FROM users")).all())
        verified = db.execute(text("SELECT count(*) FROM users WHERE email_verified_at IS NOT NULL")).scalar()
    assert found == {
        "u1": "élodie@xn--exmple-cua.com",
        "u2": "ann@xn--exmple-cua.com",
        "u3": "Ann@exämple.com",
    }
    assert verified == 3
    reported = [r.getMessage() for r in caplog.records if "share one mailbox" in r.getMessage()]
    assert reported == [reported[0]] and "u2, u3" in reported[0] and "@" not in reported[0]
    engine.dispose()
