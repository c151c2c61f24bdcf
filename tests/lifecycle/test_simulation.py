"""Sixty simulated days of random activity, with the sweeper killed at random points.

Uploads, trainings, renders, owners' deletions, account erasures, legal holds placed and released,
uploads in flight while the sweeper runs, and aborted uploads that leave orphans. The sweeper runs at
the end of every interval; about three runs in ten are killed (between blobs and rows, before the commit,
or in the orphan pass) and the next run must finish its work. After every completed sweep `retention
check` must find nothing; at the end, every deletion must match what happened: nothing expired before
its period, nothing deleted without a reason, nothing of anyone else's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import make_transient

from petportrait.clock import Clock
from petportrait.db import new_id, session_scope
from petportrait.lifecycle import holds, sweeper
from petportrait.lifecycle.check import run_check
from petportrait.lifecycle.service import erase_account
from petportrait.pets.models import Pet
from petportrait.retention import audit, policy
from petportrait.retention.holds import LegalHoldActive, hold_covering
from petportrait.retention.models import HoldScope, LegalHold, Tombstone
from petportrait.retention.tombstones import delete_now
from petportrait.settings import Settings
from petportrait.web.app import Services
from tests.lifecycle.helpers import (
    add_model,
    add_pet,
    add_photo,
    add_render,
    add_user,
    put_blob,
    settings_with,
)

INTERVAL = timedelta(hours=6)
DAYS = 60
STAGES = ("after_blobs", "before_commit", "after_orphans")


class Killed(BaseException):
    """The sweeper process died here."""


@dataclass
class Item:
    kind: str
    owner_id: str
    created_at: datetime
    expires_at: datetime
    key: str


@dataclass
class Ledger:
    """What the simulation did, to judge the service's deletions against."""

    items: dict[str, Item] = field(default_factory=dict)
    owner_deleted: dict[str, datetime] = field(default_factory=dict)
    erased: dict[str, datetime] = field(default_factory=dict)
    users: list[str] = field(default_factory=list)
    pets: dict[str, str] = field(default_factory=dict)  # owner -> pet
    kills: int = 0
    recovered: int = 0
    refused_by_hold: int = 0
    in_flight_kept: int = 0
    orphans_written: int = 0


class World:
    def __init__(self, services: Services, settings: Settings, clock: Clock, rng: random.Random) -> None:
        self.services = services
        self.settings = settings
        self.clock = clock
        self.rng = rng
        self.ledger = Ledger()

    # -- activity -------------------------------------------------------------------------------------

    def live_users(self) -> list[str]:
        return [u for u in self.ledger.users if u not in self.ledger.erased]

    def sign_up(self, at: datetime) -> None:
        with session_scope(self.services.session_factory) as session:
            user = add_user(session, at=at)
            pet = add_pet(session, user.id, at=at)
            self.ledger.users.append(user.id)
            self.ledger.pets[user.id] = pet.id

    def store(self, kind: str, owner_id: str, at: datetime) -> None:
        with session_scope(self.services.session_factory) as session:
            pet = session.get(Pet, self.ledger.pets[owner_id])
            assert pet is not None
            blobs = self.services.blobs
            if kind == "photo":
                item = add_photo(session, blobs, pet, at=at)
            elif kind == "model":
                item = add_model(session, blobs, pet, at=at)
            else:
                item = add_render(session, blobs, pet, at=at)
            self.ledger.items[item.id] = Item(kind, owner_id, at, item.expires_at, item.storage_key)  # type: ignore[arg-type]

    def owner_deletes(self, owner_id: str, at: datetime) -> None:
        self.clock.freeze(at)
        with self.services.session_factory() as session:
            choices = [
                (kind, item_id)
                for kind, model in self.services.registry.item_models.items()
                for item_id in session.scalars(
                    select(model.id).where(
                        model.owner_id == owner_id, policy.live_clause(model, now=at, settings=self.settings)
                    )
                )
            ]
        if not choices:
            return
        kind, item_id = self.rng.choice(choices)
        try:
            with session_scope(self.services.session_factory) as session:
                delete_now(
                    session,
                    blobs=self.services.blobs,
                    kind=kind,
                    item_id=item_id,
                    owner_id=owner_id,
                    actor_id=owner_id,
                )
            self.ledger.owner_deleted[item_id] = at
        except LegalHoldActive:
            with self.services.session_factory() as session:
                assert hold_covering(session, kind=kind, item_id=item_id, owner_id=owner_id, now=at)
            self.ledger.refused_by_hold += 1

    def erase(self, owner_id: str, at: datetime) -> None:
        self.clock.freeze(at)
        with session_scope(self.services.session_factory) as session:
            erase_account(session, user_id=owner_id, actor_id=owner_id)
        self.ledger.erased[owner_id] = at

    def place_hold(self, at: datetime) -> None:
        self.clock.freeze(at)
        ends = at + timedelta(hours=self.rng.randint(6, 24 * 12))
        with session_scope(self.services.session_factory) as session:
            if self.rng.random() < 0.3 and self.ledger.users:
                owner = self.rng.choice(self.ledger.users)
                holds.place_hold(
                    session,
                    scope=HoldScope.ACCOUNT,
                    owner_id=owner,
                    reason="inquiry",
                    ends_at=ends,
                    actor_id=None,
                )
                return
            present = [
                (kind, item_id)
                for kind, model in self.services.registry.item_models.items()
                for item_id in session.scalars(select(model.id))
            ]
            if present:
                kind, item_id = self.rng.choice(present)
                holds.place_hold(
                    session,
                    scope=HoldScope.ITEM,
                    kind=kind,
                    item_id=item_id,
                    reason="claim",
                    ends_at=ends,
                    actor_id=None,
                )

    def release_hold(self, at: datetime) -> None:
        self.clock.freeze(at)
        with session_scope(self.services.session_factory) as session:
            active = holds.list_holds(session, active_only=True, now=at)
            if active:
                holds.release_hold(session, hold_id=self.rng.choice(active).id, actor_id=None)

    def abandoned_upload(self, owner_id: str, at: datetime) -> None:
        """A blob whose row was never committed (the upload died): an orphan to be reconciled."""
        put_blob(self.services.blobs, f"photos/{owner_id}/{self.ledger.pets[owner_id]}/{new_id()}.jpg", at)
        self.ledger.orphans_written += 1

    # -- the sweeper ----------------------------------------------------------------------------------

    def sweep(self, at: datetime, fault: sweeper.Fault | None = None) -> sweeper.SweepReport:
        return sweeper.sweep_once(
            self.services.session_factory,
            self.services.blobs,
            now=at,
            settings=self.settings,
            batch_size=5,
            holder="simulated-consumer",
            fault=fault,
        )

    def sweep_with_upload_in_flight(self, owner_id: str, at: datetime) -> None:
        """An upload whose blob is written but whose row commits only after a sweep ran: it must survive."""
        with session_scope(self.services.session_factory) as session:
            pet = session.get(Pet, self.ledger.pets[owner_id])
            assert pet is not None
            photo = add_photo(session, self.services.blobs, pet, at=at)
            session.expunge(photo)
            make_transient(photo)
            session.rollback()  # the row is not there yet; the blob is
        assert self.services.blobs.exists(photo.storage_key)
        self.sweep(at, None)
        assert self.services.blobs.exists(photo.storage_key), "the sweeper touched an upload in flight"
        with session_scope(self.services.session_factory) as session:
            session.add(photo)
        self.ledger.items[photo.id] = Item("photo", owner_id, at, photo.expires_at, photo.storage_key)
        self.ledger.in_flight_kept += 1

    def sweep_maybe_killed(self, at: datetime) -> None:
        if self.rng.random() < 0.3:
            stage = self.rng.choice(STAGES)
            skip = self.rng.randint(0, 1)  # die at the first or the second time the sweep gets there
            seen = {"n": 0}

            def fault(where: str) -> None:
                if where == stage:
                    if seen["n"] >= skip:
                        raise Killed(where)
                    seen["n"] += 1

            try:
                self.sweep(at, fault)
            except Killed:
                self.ledger.kills += 1
                report = self.sweep(at)  # the consumer comes back and runs again
                assert report.ran and not report.errors, report
                self.ledger.recovered += 1
                return
        report = self.sweep(at)
        assert report.ran and not report.errors, report

    def check(self, at: datetime) -> None:
        with self.services.session_factory() as session:
            report = run_check(session, self.services.blobs, settings=self.settings, now=at)
        assert report.ok, [
            f"{f.problem} {f.kind} {f.item_id} {f.storage_key} {f.detail}" for f in report.findings
        ]


def test_sixty_days_of_random_activity_with_killed_sweeps(services: Services, frozen_clock: Clock) -> None:
    rng = random.Random(20261130)
    settings = settings_with(services, sweep_interval_seconds=INTERVAL.total_seconds())
    start = frozen_clock.freeze(frozen_clock.now().replace(microsecond=0))
    world = World(services, settings, frozen_clock, rng)
    for _ in range(3):
        world.sign_up(start)

    steps = int(timedelta(days=DAYS) / INTERVAL)
    for step in range(steps):
        begin = start + step * INTERVAL
        moments = sorted(
            begin + timedelta(seconds=rng.randint(1, int(INTERVAL.total_seconds()) - 1)) for _ in range(4)
        )
        for at in moments:
            users = world.live_users()
            roll = rng.random()
            if roll < 0.08 or not users:
                world.sign_up(at)
            elif roll < 0.40:
                for _ in range(rng.randint(1, 3)):
                    world.store("photo", rng.choice(users), at)
            elif roll < 0.52:
                world.store("model", rng.choice(users), at)
            elif roll < 0.70:
                world.store("render", rng.choice(users), at)
            elif roll < 0.82:
                world.owner_deletes(rng.choice(users), at)
            elif roll < 0.86:
                world.place_hold(at)
            elif roll < 0.89:
                world.release_hold(at)
            elif roll < 0.91 and len(users) > 2:
                world.erase(rng.choice(users), at)
            elif roll < 0.95:
                world.abandoned_upload(rng.choice(users), at)
            else:
                world.sweep_with_upload_in_flight(rng.choice(users), at)
        end = begin + INTERVAL
        frozen_clock.freeze(end)
        world.sweep_maybe_killed(end)
        world.check(end)

    _judge(world, start + steps * INTERVAL)


def _judge(world: World, end: datetime) -> None:
    ledger = world.ledger
    assert ledger.kills >= 10 and ledger.recovered == ledger.kills
    assert ledger.in_flight_kept > 0 and ledger.orphans_written > 0 and ledger.erased
    session_factory = world.services.session_factory
    with session_factory() as session:
        stones = {t.id: t for t in session.scalars(select(Tombstone))}
        held_ever = {(h.subject_kind, h.subject_id) for h in session.scalars(select(LegalHold))}
        assert audit.verify(session).ok
        for item_id, item in ledger.items.items():
            row = session.get(world.services.registry.item_models[item.kind], item_id)
            stone = stones.get(item_id)
            assert (row is None) != (stone is None), (
                f"{item.kind} {item_id}: exactly one of row and tombstone"
            )
            if stone is None:
                # Still stored: only if not yet due, or kept by a hold.
                due = item.expires_at <= end or item.owner_id in ledger.erased
                if due:
                    assert hold_covering(
                        session, kind=item.kind, item_id=item_id, owner_id=item.owner_id, now=end
                    ), f"{item.kind} {item_id} is due and unheld but still stored"
                assert world.services.blobs.exists(item.key)
                continue
            assert stone.owner_id == item.owner_id and stone.kind == item.kind
            assert not world.services.blobs.exists(item.key)
            if stone.reason == "expired":
                assert stone.purged_at >= item.expires_at, f"{item.kind} {item_id} deleted before its period"
                late = stone.purged_at - item.expires_at
                assert (
                    late <= INTERVAL
                    or (item.kind, item_id) in held_ever
                    or stone.owner_id
                    in {
                        h.owner_id
                        for h in session.scalars(select(LegalHold).where(LegalHold.scope == "account"))
                    }
                ), f"{item.kind} {item_id} deleted {late} after it expired"
            elif stone.reason == "owner_deleted":
                assert ledger.owner_deleted.get(item_id) == stone.purged_at
            else:
                assert stone.reason == "account_deleted"
                assert stone.purged_at >= ledger.erased[item.owner_id]
        assert set(stones) <= set(ledger.items)
    counts: dict[str, int] = {}
    for stone in stones.values():
        counts[stone.reason] = counts.get(stone.reason, 0) + 1
    assert (
        counts.get("expired", 0) > 50 and counts.get("owner_deleted", 0) > 5 and counts.get("account_deleted")
    )
