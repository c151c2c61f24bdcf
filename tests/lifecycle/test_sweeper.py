"""The sweeper: deletes at the period and never before, blob first then tombstone, safe to kill and rerun."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from petportrait.accounts.models import ApiToken, User
from petportrait.db import new_id, session_scope
from petportrait.jobs import leases
from petportrait.jobs.models import Job, Lease
from petportrait.lifecycle import holds, sweeper
from petportrait.lifecycle.service import erase_account
from petportrait.pets.models import Pet, Photo
from petportrait.retention import audit, policy
from petportrait.retention.models import AuditEntry, DeletionReason, HoldScope, SweepRun, Tombstone
from petportrait.web.app import Services
from tests.lifecycle.helpers import DAY, add_household, add_pet, add_photo, add_user, put_blob, settings_with

PERIODS = {"photo": timedelta(days=30), "model": timedelta(days=7), "render": timedelta(days=30)}


class Killed(BaseException):
    """What the fault hook raises: the sweep stops there, as if the process died."""


def sweep(services: Services, at: datetime, **kwargs: object) -> sweeper.SweepReport:
    return sweeper.sweep_once(
        services.session_factory,
        services.blobs,
        now=at,
        settings=services.settings,
        **kwargs,  # type: ignore[arg-type]
    )


def present(services: Services, kind: str, item_id: str) -> bool:
    with services.session_factory() as session:
        return session.get(services.registry.item_models[kind], item_id) is not None


@pytest.mark.parametrize("kind", ["photo", "model", "render"])
def test_item_is_present_at_expiry_minus_one_second_and_gone_after_the_next_sweep(
    services: Services, now: datetime, kind: str
) -> None:
    house = add_household(services, at=now)
    item_id = getattr(house, f"{kind}_id")
    expiry = now + PERIODS[kind]
    report = sweep(services, expiry - timedelta(seconds=1))
    assert report.ran and report.purged.get(kind, 0) == 0
    assert present(services, kind, item_id) and services.blobs.exists(house.keys[kind])

    report = sweep(services, expiry)
    assert report.purged[kind] == 1
    assert not present(services, kind, item_id)
    assert not services.blobs.exists(house.keys[kind])
    with services.session_factory() as session:
        stone = session.get(Tombstone, item_id)
        assert stone is not None
        assert (stone.kind, stone.reason, stone.owner_id) == (kind, "expired", house.user_id)
        assert stone.storage_key == house.keys[kind] and stone.purged_at == expiry
        assert stone.created_at == now and stone.expires_at == expiry
        assert (stone.fingerprint or "").startswith("hmac-sha256:")
        entry = session.scalars(select(AuditEntry).where(AuditEntry.subject_id == item_id)).one()
        assert (entry.action, entry.purpose, entry.owner_id) == ("item.deleted", "expired", house.user_id)
        assert audit.verify(session).ok


def test_nothing_is_deleted_before_its_period(services: Services, now: datetime) -> None:
    house = add_household(services, at=now)
    for hours in range(0, 24 * 7, 7):  # up to the model's week, minus a bit
        report = sweep(services, now + timedelta(hours=hours))
        assert report.total_purged == 0, hours
    for kind in ("photo", "model", "render"):
        assert present(services, kind, getattr(house, f"{kind}_id"))
    report = sweep(services, now + 7 * DAY)
    assert report.purged == {"model": 1}
    for hours in range(24 * 7, 24 * 30, 23):
        assert sweep(services, now + timedelta(hours=hours)).total_purged == 0, hours
    assert sweep(services, now + 30 * DAY).purged == {"render": 1, "photo": 1}


def test_a_shortened_setting_applies_to_items_stored_before_it(services: Services, now: datetime) -> None:
    house = add_household(services, at=now)  # written with the policy's 30 days
    short = settings_with(services, photo_days=2.0)
    report = sweeper.sweep_once(
        services.session_factory, services.blobs, now=now + 2 * DAY - timedelta(seconds=1), settings=short
    )
    assert report.total_purged == 0
    report = sweeper.sweep_once(services.session_factory, services.blobs, now=now + 2 * DAY, settings=short)
    assert report.purged == {"photo": 1}
    assert not present(services, "photo", house.photo_id)


def test_batches_sweep_everything_due(services: Services, now: datetime) -> None:
    with session_scope(services.session_factory) as session:
        user = add_user(session, at=now)
        pet = add_pet(session, user.id, at=now)
        keys = [add_photo(session, services.blobs, pet, at=now).storage_key for _ in range(23)]
    report = sweep(services, now + 30 * DAY, batch_size=5)
    assert report.purged == {"photo": 23}
    assert not any(services.blobs.exists(key) for key in keys)
    with services.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Tombstone)) == 23
        assert audit.verify(session).entries == 23


@pytest.mark.parametrize("stage", ["after_blobs", "before_commit"])
def test_a_sweep_killed_between_blob_and_row_is_finished_by_the_next(
    services: Services, now: datetime, stage: str
) -> None:
    house = add_household(services, at=now)

    def fault(where: str) -> None:
        if where == stage:
            raise Killed(where)

    with pytest.raises(Killed):
        sweep(services, now + 30 * DAY, fault=fault)
    # Killed: the first kind's blobs are gone, its rows are not; nothing is tombstoned yet.
    assert present(services, "render", house.render_id)
    assert not services.blobs.exists(house.keys["render"])
    with services.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Tombstone)) == 0
    # The expired row stays hidden meanwhile.
    with services.session_factory() as session:
        render = session.get(services.registry.item_models["render"], house.render_id)
        assert policy.is_expired(render, now + 30 * DAY, settings=services.settings)

    report = sweep(services, now + 30 * DAY)
    assert report.ran and report.purged == {"render": 1, "model": 1, "photo": 1}
    with services.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Tombstone)) == 3
        assert audit.verify(session).ok


def test_another_holder_waits_for_the_lease_until_it_expires(services: Services, now: datetime) -> None:
    add_household(services, at=now)
    ttl = sweeper.lease_ttl(services.settings)
    died = now + 30 * DAY
    assert leases.take(
        services.session_factory, name=sweeper.SWEEP_LEASE, holder="dead-process", now=died, ttl=ttl
    )
    blocked = sweep(services, died + ttl - timedelta(seconds=1), holder="me")
    assert not blocked.ran and blocked.total_purged == 0
    report = sweep(services, died + ttl, holder="me")
    assert report.ran and report.total_purged == 3
    with services.session_factory() as session:
        lease = session.get(Lease, sweeper.SWEEP_LEASE)
        assert lease is not None and lease.holder == leases.FREE and lease.last_run_at == died + ttl
        assert session.scalar(select(func.count()).select_from(SweepRun)) == 1


def test_a_sweep_under_a_clock_run_ahead_leaves_the_lease_free_for_the_right_clock(
    services: Services, now: datetime
) -> None:
    """A process whose clock is a month ahead (a moved clock, a bad host) sweeps and ends: a process with
    the right clock can sweep at once, not only when the wrong clock's month has passed."""
    add_household(services, at=now)
    ahead = sweep(services, now + 40 * DAY, holder="ahead")
    assert ahead.ran
    right = sweep(services, now + timedelta(minutes=1), holder="me")
    assert right.ran and right.reconciled


def test_concurrent_sweepers_delete_each_item_once(services: Services, now: datetime) -> None:
    with session_scope(services.session_factory) as session:
        user = add_user(session, at=now)
        pet = add_pet(session, user.id, at=now)
        for _ in range(40):
            add_photo(session, services.blobs, pet, at=now)
    reports: list[sweeper.SweepReport] = []

    def run(holder: str) -> None:
        for i in range(3):
            at = now + 30 * DAY + timedelta(seconds=i)
            reports.append(sweep(services, at, holder=holder, batch_size=4))

    threads = [threading.Thread(target=run, args=(f"h{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.total_purged for r in reports) == 40
    assert not any(r.errors for r in reports)
    with services.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Tombstone)) == 40
        assert audit.verify(session).ok


def test_reconciliation_removes_orphans_after_the_grace_and_never_an_upload_in_flight(
    services: Services, now: datetime
) -> None:
    house = add_household(services, at=now)
    grace = timedelta(seconds=services.settings.retention.orphan_grace_seconds)
    old_orphan = f"photos/{house.user_id}/{house.pet_id}/{new_id()}.jpg"
    in_flight = f"renders/{house.user_id}/{new_id()}/a1/{new_id()}.png"
    put_blob(services.blobs, old_orphan, now - grace - timedelta(seconds=1))
    put_blob(services.blobs, in_flight, now - grace + timedelta(seconds=5))
    report = sweep(services, now, reconcile=True)
    assert report.orphans_removed == 1
    assert not services.blobs.exists(old_orphan)
    assert services.blobs.exists(in_flight)
    for key in house.keys.values():
        assert services.blobs.exists(key)
    with services.session_factory() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "blob.deleted")).one()
        assert entry.purpose == "orphaned" and old_orphan in entry.details


def test_a_blob_that_a_tombstone_names_is_removed_at_once(services: Services, now: datetime) -> None:
    house = add_household(services, at=now)
    sweep(services, now + 30 * DAY)
    put_blob(services.blobs, house.keys["photo"], now + 30 * DAY)  # it came back (a late write)
    report = sweep(services, now + 30 * DAY + timedelta(seconds=1), reconcile=True)
    assert report.tombstone_blobs_removed == 1 and report.orphans_removed == 0
    assert not services.blobs.exists(house.keys["photo"])


def test_reconciliation_runs_at_its_interval(services: Services, now: datetime) -> None:
    first = sweep(services, now)
    assert first.reconciled
    assert not sweep(services, now + timedelta(seconds=60)).reconciled
    assert sweep(services, now + timedelta(seconds=sweeper.DEFAULT_RECONCILE_SECONDS)).reconciled


def test_account_erasure_is_complete_within_one_sweep(services: Services, now: datetime) -> None:
    house = add_household(services, at=now)
    other = add_household(services, at=now)
    with session_scope(services.session_factory) as session:
        session.add(
            ApiToken(
                user_id=house.user_id,
                kind="api",
                token_hash=new_id() * 2,
                created_at=now,
                expires_at=now + 30 * DAY,
            )
        )
        session.add(
            Job(kind="render", owner_id=house.user_id, target_id=house.pet_id, state="queued", created_at=now)
        )
    with session_scope(services.session_factory) as session:
        summary = erase_account(session, user_id=house.user_id, actor_id=house.user_id)
    assert {kind: n for kind, n in summary.items_pending.items() if n} == {
        "render": 1,
        "model": 1,
        "photo": 1,
    }
    assert summary.tokens_revoked == 1 and summary.jobs_cancelled == 1
    with services.session_factory() as session:
        user = session.get(User, house.user_id)
        assert user is not None and user.deleted_at == now and "example.com" not in user.email
        assert session.scalars(select(Job.state).where(Job.owner_id == house.user_id)).one() == "cancelled"

    report = sweep(services, now + timedelta(seconds=1))
    assert report.purged == {"render": 1, "model": 1, "photo": 1}
    assert report.reasons == {DeletionReason.ACCOUNT_DELETED.value: 3}
    assert not any(services.blobs.exists(k) for k in house.keys.values())
    assert all(services.blobs.exists(k) for k in other.keys.values())
    with services.session_factory() as session:
        assert session.get(Pet, house.pet_id) is None and session.get(Pet, other.pet_id) is not None
        assert session.scalar(select(func.count()).select_from(ApiToken)) == 0
        assert session.scalar(select(func.count()).select_from(Job)) == 0
        reasons = session.scalars(select(Tombstone.reason).where(Tombstone.owner_id == house.user_id)).all()
        assert sorted(reasons) == ["account_deleted"] * 3


def test_a_hold_placed_while_a_sweep_runs_protects_the_items_it_has_not_reached(
    services: Services, now: datetime
) -> None:
    with session_scope(services.session_factory) as session:
        user = add_user(session, at=now)
        pet = add_pet(session, user.id, at=now)
        photos = [add_photo(session, services.blobs, pet, at=now) for _ in range(4)]
    at = now + 30 * DAY
    placed: list[str] = []

    def fault(where: str) -> None:
        if where == "after_blobs" and not placed:  # the first batch is gone; hold everything that is left
            with session_scope(services.session_factory) as session:
                for photo in photos:
                    if session.get(Photo, photo.id) is not None and services.blobs.exists(photo.storage_key):
                        frozen = holds.place_hold(
                            session,
                            scope=HoldScope.ITEM,
                            kind="photo",
                            item_id=photo.id,
                            reason="preserve",
                            ends_at=at + DAY,
                            actor_id=None,
                        )
                        placed.append(frozen.subject_id or "")

    report = sweep(services, at, batch_size=1, fault=fault)
    assert report.purged == {"photo": 1} and len(placed) == 3
    for photo in photos:
        assert services.blobs.exists(photo.storage_key) == (photo.id in placed)


def test_a_batch_whose_item_was_deleted_meanwhile_is_retried_and_the_next_kinds_still_swept(
    services: Services, now: datetime
) -> None:
    """An erased account's portraits are swept in their kind's last phase; one of them is deleted by
    another path while the sweep has it in a batch. That batch is not recorded (its tombstone exists
    already) and the error says so; the failure shows only once the next kind is being swept, and that
    kind is still swept in the same run. The next run finishes the portraits: one tombstone each,
    nothing left, the audit chain whole."""
    from petportrait.portraits.models import Render
    from petportrait.retention.tombstones import delete_rows
    from tests.lifecycle.helpers import add_render

    with session_scope(services.session_factory) as session:
        gone = add_user(session, at=now)
        gone_pet = add_pet(session, gone.id, at=now)
        renders = [add_render(session, services.blobs, gone_pet, at=now).id for _ in range(2)]  # one batch
        gone.deleted_at = now
        alive = add_user(session, at=now)
        alive_pet = add_pet(session, alive.id, at=now)
        photos = [add_photo(session, services.blobs, alive_pet, at=now - DAY * 30).id for _ in range(3)]
        gone_id = gone.id
    raced: list[str] = []

    def another_path_deletes_one(where: str) -> None:
        if where != "after_blobs" or raced:
            return
        with session_scope(services.session_factory) as session:
            victim = session.scalars(select(Render).where(Render.id.in_(renders)).limit(1)).one()
            raced.append(victim.id)
            delete_rows(session, blobs=services.blobs, rows=[("render", victim)], actor_id=None)

    first = sweep(services, now + DAY, batch_size=2, fault=another_path_deletes_one)
    assert raced
    assert any(e.startswith("render: batch not recorded, will retry") for e in first.errors), first.errors
    assert first.purged.get("render", 0) == 0
    assert first.purged.get("photo") == len(photos)  # the kind after the failed batch was swept

    second = sweep(services, now + DAY + timedelta(minutes=1))
    assert not second.errors
    assert second.purged["render"] == len(renders) - 1
    with services.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Render)) == 0
        stones = session.scalars(select(Tombstone.id).where(Tombstone.kind == "render")).all()
        assert sorted(stones) == sorted(renders)
        assert audit.verify(session).ok
    assert list(services.blobs.list(f"renders/{gone_id}/")) == []
