"""A swept value leaves no readable remnant in a running server's SQLite files: not in the WAL file while
other connections stay open (a long-running server never closes them all), not in the database file's free
pages, even on a SQLite library whose default is secure_delete off."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.pool import Pool

from petportrait.clock import Clock
from petportrait.db import make_engine, session_scope
from petportrait.lifecycle import sweeper
from petportrait.services import build_services
from petportrait.storage.local import LocalBlobStore
from tests.conftest import make_settings
from tests.lifecycle.helpers import add_pet, add_photo, add_user


def _secure_delete_off(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA secure_delete=OFF")


@pytest.fixture
def library_default_off() -> Iterator[None]:
    """Every new pooled connection starts with secure_delete off, as on a SQLite built without
    SQLITE_SECURE_DELETE (this machine's is built with it on). Class-level pool listeners run before an
    engine's own, so the engine's pragmas still get their say."""
    event.listen(Pool, "connect", _secure_delete_off)
    yield
    event.remove(Pool, "connect", _secure_delete_off)


def test_engine_connections_have_secure_delete_on_even_when_the_library_default_is_off(
    library_default_off: None, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            # the fixture's override reaches every connection: without the engine's pragma it would be off
            value = conn.exec_driver_sql("PRAGMA secure_delete").scalar()
    finally:
        engine.dispose()
    assert value == 1
    raw = sqlite3.connect(tmp_path / "db.sqlite3")
    raw.execute("PRAGMA secure_delete=OFF")
    assert raw.execute("PRAGMA secure_delete").fetchone() == (0,)  # the pragma does switch it off
    raw.close()


def test_a_swept_photo_leaves_no_trace_in_the_wal_or_free_pages_with_another_connection_open(
    library_default_off: None, tmp_path: Path, frozen_clock: Clock
) -> None:
    db_file = tmp_path / "petportrait.sqlite3"
    settings = make_settings(tmp_path / "var", database={"url": f"sqlite:///{db_file}"})  # SQLite on any leg
    services = build_services(settings, migrate=True)
    blobs = LocalBlobStore(tmp_path / "blobs")  # unsealed, as the shared fixture's: the rows are the point
    marker = f"remnant-{secrets.token_hex(8)}"
    now = frozen_clock.freeze(frozen_clock.now().replace(microsecond=0))
    other = services.engine.connect()  # a server's other connection, idle but open for the whole sweep
    try:
        with session_scope(services.session_factory) as session:
            user = add_user(session, at=now)
            pet = add_pet(session, user.id, at=now)
            photo = add_photo(session, blobs, pet, at=now, days=30)
            photo.original_filename = f"{marker}.jpg"
        other.execute(text("SELECT 1")).all()
        assert marker.encode() in db_file.read_bytes() + Path(f"{db_file}-wal").read_bytes()  # it was written

        report = sweeper.sweep_once(
            services.session_factory, blobs, settings=settings, now=now + timedelta(days=31)
        )
        assert report.ran and not report.errors

        wal = Path(f"{db_file}-wal")
        assert wal.exists()  # the other connection keeps the database open in WAL mode
        assert marker.encode() not in wal.read_bytes(), "the deleted value lingers in the WAL file"
        assert marker.encode() not in db_file.read_bytes(), "the deleted value lingers in the database file"
    finally:
        other.close()
        services.engine.dispose()
