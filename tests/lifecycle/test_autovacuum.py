"""PostgreSQL with autovacuum off keeps deleted rows and destroyed data keys as dead tuples (issue 19):
start-up warns, `retention check` fails naming the server or table and its dead tuples, and the sweeper
vacuums data_keys after a sweep that destroyed keys.

Only on PostgreSQL (PETPORTRAIT__DATABASE__URL), the real server: autovacuum is turned off for one table
with its storage parameter, which the check must see whatever the server's own setting; the server's
setting is read and the check must agree with it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy import text

from petportrait.clock import utcnow
from petportrait.lifecycle import sweeper, vacuum
from petportrait.lifecycle.check import run_check
from petportrait.retention.models import DataKey
from petportrait.services import build_services
from petportrait.web.app import Services
from tests.lifecycle.helpers import DAY, add_household


@pytest.fixture
def postgres(services: Services) -> Iterator[Services]:
    if services.engine.dialect.name != "postgresql":
        pytest.skip("autovacuum is PostgreSQL's")
    yield services
    with services.engine.begin() as conn:
        conn.execute(text("ALTER TABLE data_keys RESET (autovacuum_enabled)"))


def _dead_keys(services: Services, count: int) -> None:
    """`count` data keys made and destroyed: dead tuples in data_keys (stats flushed at once)."""
    with services.engine.begin() as conn:
        conn.execute(
            DataKey.__table__.insert(),  # type: ignore[attr-defined]
            [
                {"storage_key": f"photos/{n:032x}/dead", "wrapped_key": b"w" * 61, "created_at": utcnow()}
                for n in range(count)
            ],
        )
    with services.engine.begin() as conn:
        conn.execute(text("DELETE FROM data_keys WHERE storage_key LIKE 'photos/%/dead'"))
        conn.execute(text("SELECT pg_stat_force_next_flush()"))


def _server_autovacuum(services: Services) -> bool:
    with services.engine.connect() as conn:
        return conn.execute(text("SHOW autovacuum")).scalar() == "on"


def test_check_and_start_up_name_each_place_autovacuum_is_off_with_its_dead_tuples(
    postgres: Services, caplog: pytest.LogCaptureFixture
) -> None:
    services = postgres
    with services.session_factory() as session:
        before = run_check(session, services.blobs, settings=services.settings)
    assert "data_keys" not in {f.kind for f in before.findings if f.problem == "autovacuum_off"}

    with services.engine.begin() as conn:
        conn.execute(text("ALTER TABLE data_keys SET (autovacuum_enabled = false)"))
    _dead_keys(services, 40)
    with services.session_factory() as session:
        report = run_check(session, services.blobs, settings=services.settings)
    off = {f.kind: f.detail for f in report.findings if f.problem == "autovacuum_off"}
    assert not report.ok
    assert "autovacuum_enabled=false" in off["data_keys"]
    dead = int(off["data_keys"].rsplit("; ", 1)[1].split()[0])
    assert dead >= 40, off
    # the server's own setting: a finding exactly when it is off (as on this machine's server)
    assert (vacuum.SERVER in off) == (not _server_autovacuum(services)), off

    with caplog.at_level(logging.WARNING, logger="petportrait.lifecycle.vacuum"):
        built = build_services(services.settings)
    built.engine.dispose()
    warned = [r.getMessage() for r in caplog.records if "autovacuum does not run" in r.getMessage()]
    assert any("data_keys" in w and "dead tuples" in w for w in warned), warned


def test_a_sweep_that_destroyed_data_keys_vacuums_the_table(postgres: Services, now: datetime) -> None:
    services = postgres
    with services.engine.begin() as conn:
        conn.execute(text("ALTER TABLE data_keys SET (autovacuum_enabled = false)"))  # only our VACUUM
    house = add_household(services, at=now)
    with services.engine.begin() as conn:
        conn.execute(
            DataKey.__table__.insert(),  # type: ignore[attr-defined]
            [{"storage_key": house.keys["photo"], "wrapped_key": b"w" * 61, "created_at": utcnow()}],
        )
    nothing = sweeper.sweep_once(
        services.session_factory, services.blobs, now=now, settings=services.settings
    )
    assert nothing.total_purged == 0 and not nothing.data_keys_vacuumed  # nothing destroyed: no VACUUM

    started = _last_vacuum(services)
    report = sweeper.sweep_once(
        services.session_factory, services.blobs, now=now + 30 * DAY, settings=services.settings
    )
    assert report.purged.get("photo") == 1
    assert report.data_keys_vacuumed and report.vacuum_skipped is None
    after = _last_vacuum(services)
    assert after is not None and (started is None or after > started)
    with services.engine.connect() as conn:
        dead = conn.execute(text("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'data_keys'"))
        assert dead.scalar() == 0


def _last_vacuum(services: Services) -> datetime | None:
    with services.engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        found = conn.execute(text("SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 'data_keys'"))
        value: datetime | None = found.scalar()
        return value
