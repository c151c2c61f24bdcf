"""`db.insert_rows` (the sweeper's tombstones, the audit log's batches) stores exactly what a Core insert
stores, on SQLite and on PostgreSQL: timestamps in UTC and read back aware, NULLs, JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import delete, insert, select

from petportrait.db import insert_rows, new_id
from petportrait.integrations.models import WebhookEndpoint
from petportrait.retention.models import Tombstone
from petportrait.web.app import Services
from tests.lifecycle.helpers import add_user

TOMBSTONES = Tombstone.__table__
ENDPOINTS = WebhookEndpoint.__table__


def tombstone(i: int, at: datetime) -> dict[str, Any]:
    return {
        "id": new_id(),
        "kind": "photo",
        "owner_id": new_id(),
        "pet_id": None if i % 2 else new_id(),
        "created_at": at - timedelta(days=i),
        "expires_at": None if i % 3 == 0 else at + timedelta(microseconds=i),
        "storage_key": f"photos/o/p/{i}.jpg",
        "fingerprint": None,
        "size": i,
        "reason": "expired",
        "actor_id": None,
        "purged_at": at,
    }


def stored(services: Services, table: Any) -> list[tuple[Any, ...]]:
    with services.session_factory() as session:
        rows = session.execute(select(table).order_by(table.c.id)).all()
    return [tuple(row) for row in rows]


def test_insert_rows_stores_what_a_core_insert_stores(services: Services) -> None:
    # one aware timestamp in another zone: both ways store the same instant, read back in UTC
    at = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=5)))
    rows = [tombstone(i, at) for i in range(7)]
    with services.session_factory() as session:
        session.connection().execute(insert(TOMBSTONES), rows)
        session.commit()
    by_core = stored(services, TOMBSTONES)
    with services.session_factory() as session:
        session.execute(delete(TOMBSTONES))
        insert_rows(session.connection(), TOMBSTONES, rows)
        session.commit()
    by_bulk = stored(services, TOMBSTONES)
    assert by_bulk == by_core
    assert all(value.tzinfo is not None for row in by_bulk for value in row if isinstance(value, datetime))
    assert {row[TOMBSTONES.c.keys().index("purged_at")] for row in by_bulk} == {at.astimezone(UTC)}


def test_insert_rows_handles_json_columns_and_refuses_naive_timestamps(services: Services) -> None:
    with services.session_factory() as session:
        owner = add_user(session, at=datetime.now(UTC)).id
        session.commit()
    now = datetime.now(UTC)
    row = {
        "id": new_id(),
        "owner_id": owner,
        "url": "https://hooks.example/in",
        "events": ["item.deleted", "model.ready"],
        "sealed_secret": b"sealed",
        "created_at": now,
    }
    with services.session_factory() as session:
        insert_rows(session.connection(), ENDPOINTS, [row])
        session.commit()
        endpoint = session.get(WebhookEndpoint, row["id"])
        assert endpoint is not None and endpoint.events == ["item.deleted", "model.ready"]
    with services.session_factory() as session, pytest.raises(Exception, match="naive datetimes"):
        insert_rows(
            session.connection(), ENDPOINTS, [{**row, "id": new_id(), "created_at": now.replace(tzinfo=None)}]
        )
    insert_rows_nothing = stored(services, ENDPOINTS)
    assert len(insert_rows_nothing) == 1
