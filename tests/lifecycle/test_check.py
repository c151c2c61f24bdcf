"""`retention check` finds what the policy forbids, and nothing when all is well; the CLI exits non-zero."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from petportrait.cli import app
from petportrait.clock import Clock
from petportrait.db import new_id, session_scope
from petportrait.lifecycle import holds, sweeper
from petportrait.lifecycle.check import CheckReport, run_check
from petportrait.retention import audit
from petportrait.retention.models import AuditEntry, HoldScope, Tombstone
from petportrait.settings import get_settings
from petportrait.storage.local import LocalBlobStore
from petportrait.web.app import Services
from tests.lifecycle.helpers import DAY, add_household, put_blob

SLACK = timedelta(seconds=60)  # the default sweep interval
ORPHAN_AGE = timedelta(seconds=3600) + SLACK + timedelta(seconds=sweeper.DEFAULT_RECONCILE_SECONDS)


def check(services: Services, at: datetime) -> CheckReport:
    with services.session_factory() as session:
        return run_check(session, services.blobs, settings=services.settings, now=at)


def sweep(services: Services, at: datetime) -> sweeper.SweepReport:
    return sweeper.sweep_once(services.session_factory, services.blobs, now=at, settings=services.settings)


def problems(report: CheckReport) -> list[tuple[str, str]]:
    return sorted((f.problem, f.kind) for f in report.findings)


def test_a_healthy_store_has_no_findings(services: Services, now: datetime) -> None:
    add_household(services, at=now)
    for at in (now, now + 7 * DAY, now + 30 * DAY, now + 31 * DAY):
        sweep(services, at)
        report = check(services, at + SLACK)
        assert report.ok, report.findings
    assert report.tombstones_checked == 3 and report.rows_checked == 0


def test_an_item_left_past_expiry_plus_one_interval_is_overdue(services: Services, now: datetime) -> None:
    house = add_household(services, at=now)
    expiry = now + 7 * DAY
    assert check(services, expiry + SLACK - timedelta(seconds=1)).ok
    report = check(services, expiry + SLACK + timedelta(seconds=1))
    assert problems(report) == [("overdue", "model")]
    assert report.findings[0].item_id == house.model_id


def test_a_held_item_is_not_overdue_until_an_interval_after_its_hold_ends(
    services: Services, now: datetime
) -> None:
    house = add_household(services, at=now)
    with session_scope(services.session_factory) as session:
        holds.place_hold(
            session,
            scope=HoldScope.ITEM,
            kind="model",
            item_id=house.model_id,
            reason="r",
            ends_at=now + 20 * DAY,
            actor_id=None,
        )
    assert check(services, now + 19 * DAY).ok
    assert check(services, now + 20 * DAY + SLACK - timedelta(seconds=1)).ok
    assert problems(check(services, now + 20 * DAY + SLACK + timedelta(seconds=1))) == [("overdue", "model")]


def test_orphans_tombstoned_blobs_missing_blobs_and_unlisted_prefixes_are_found(
    services: Services, now: datetime
) -> None:
    house = add_household(services, at=now)
    gone = add_household(services, at=now)
    with session_scope(services.session_factory) as session:
        from petportrait.retention.tombstones import delete_now

        delete_now(
            session,
            blobs=services.blobs,
            kind="render",
            item_id=gone.render_id,
            owner_id=gone.user_id,
            actor_id=gone.user_id,
        )
    at = now + DAY
    put_blob(services.blobs, gone.keys["render"], at)  # its bytes came back
    orphan = f"photos/{house.user_id}/{house.pet_id}/{new_id()}.jpg"
    young = f"photos/{house.user_id}/{house.pet_id}/{new_id()}.jpg"
    put_blob(services.blobs, orphan, at - ORPHAN_AGE - timedelta(seconds=1))
    put_blob(services.blobs, young, at - ORPHAN_AGE + timedelta(seconds=30))
    put_blob(services.blobs, "thumbnails/x.png", at)
    services.blobs.delete(house.keys["photo"])
    report = check(services, at)
    assert problems(report) == [
        ("missing_blob", "photo"),
        ("orphan_blob", "photo"),
        ("tombstone_blob", "render"),
        ("unlisted_blob", "?"),
    ]
    found = {f.problem: f.storage_key for f in report.findings}
    assert found["orphan_blob"] == orphan and found["tombstone_blob"] == gone.keys["render"]
    assert found["missing_blob"] == house.keys["photo"]


def test_an_item_deleted_as_expired_before_its_period_is_found(services: Services, now: datetime) -> None:
    house = add_household(services, at=now)
    sweep(services, now + 30 * DAY)
    assert check(services, now + 30 * DAY).ok
    with session_scope(services.session_factory) as session:
        session.execute(
            update(Tombstone).where(Tombstone.id == house.photo_id).values(purged_at=now + 29 * DAY)
        )
    report = check(services, now + 30 * DAY)
    assert problems(report) == [("deleted_early", "photo")]


@pytest.fixture
def cli_env(services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """The CLI pointed at this test's database and blob folder."""
    assert isinstance(services.blobs, LocalBlobStore)
    monkeypatch.setenv(
        "PETPORTRAIT__DATABASE__URL", services.engine.url.render_as_string(hide_password=False)
    )
    monkeypatch.setenv("PETPORTRAIT__STORAGE__ROOT", str(services.blobs.root))
    monkeypatch.setenv("PETPORTRAIT__DATA_DIR", str(tmp_path / "cli"))
    monkeypatch.setenv("PETPORTRAIT__ENVIRONMENT", "development")
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_the_check_command_exits_non_zero_on_a_finding(
    cli_env: CliRunner, services: Services, frozen_clock: Clock
) -> None:
    now = frozen_clock.now()
    add_household(services, at=now)  # written in plaintext, as before encryption was turned on
    plaintext = cli_env.invoke(app, ["retention", "check"])
    assert plaintext.exit_code == 1 and "plaintext_blob" in plaintext.output
    assert cli_env.invoke(app, ["retention", "encrypt-existing"]).exit_code == 0
    clean = cli_env.invoke(app, ["retention", "check"])
    assert clean.exit_code == 0, clean.output
    assert "ok: nothing overdue" in clean.output
    frozen_clock.advance(8 * DAY)
    found = cli_env.invoke(app, ["retention", "check"])
    assert found.exit_code == 1 and "overdue" in found.output and "model" in found.output
    swept = cli_env.invoke(app, ["sweep"])
    assert swept.exit_code == 0 and "purged 1 items" in swept.output
    assert cli_env.invoke(app, ["retention", "check", "--json"]).exit_code == 0


def test_the_audit_verify_command_detects_tampering(cli_env: CliRunner, services: Services) -> None:
    with session_scope(services.session_factory) as session:
        for i in range(3):
            audit.record(session, action="staff.viewed", actor_id="s", subject_id=str(i))
    ok = cli_env.invoke(app, ["audit", "verify"])
    assert ok.exit_code == 0 and "ok: 3 entries" in ok.output
    with session_scope(services.session_factory) as session:
        session.execute(update(AuditEntry).where(AuditEntry.seq == 2).values(actor_id="someone-else"))
    bad = cli_env.invoke(app, ["audit", "verify"])
    assert bad.exit_code == 1 and "from entry 2" in bad.output


def test_the_holds_command_lists_holds(cli_env: CliRunner, services: Services, frozen_clock: Clock) -> None:
    now = frozen_clock.now()
    house = add_household(services, at=now)
    assert "no legal holds in force" in cli_env.invoke(app, ["retention", "holds"]).output
    with session_scope(services.session_factory) as session:
        holds.place_hold(
            session,
            scope=HoldScope.ACCOUNT,
            owner_id=house.user_id,
            reason="regulator inquiry",
            ends_at=now + DAY,
            actor_id=None,
        )
    listed = cli_env.invoke(app, ["retention", "holds"])
    assert listed.exit_code == 0 and f"account {house.user_id}" in listed.output
    assert "regulator inquiry" in listed.output and "active" in listed.output
    frozen_clock.advance(2 * DAY)
    assert "no legal holds in force" in cli_env.invoke(app, ["retention", "holds"]).output
    assert "ended" in cli_env.invoke(app, ["retention", "holds", "--all"]).output


def test_scratch_left_by_an_earlier_worker_on_any_host_is_found_and_the_sweep_removes_it(
    services: Services, now: datetime
) -> None:
    root = services.settings.data_dir / "scratch"
    # what workers of earlier versions left: one of another host, one of a dead pid here, a stray file
    for folder in ("other-host_4242_abcd1234/job-a1/photos", "localhost_1_deadbeef/job-a2"):
        (root / folder).mkdir(parents=True)
        (root / folder / "p.jpg").write_bytes(b"\xff\xd8 a photo copy")
    (root / "latents.pt").write_bytes(b"tensors")
    report = check(services, now)
    assert problems(report) == [("scratch_leftover", "scratch")] * 3
    assert {f.storage_key for f in report.findings} == {
        "scratch/latents.pt",
        "scratch/localhost_1_deadbeef/job-a2/p.jpg",
        "scratch/other-host_4242_abcd1234/job-a1/photos/p.jpg",
    }
    swept = sweep(services, now)
    assert swept.scratch_removed >= 3
    assert list(root.iterdir()) == []
    assert check(services, now).ok
