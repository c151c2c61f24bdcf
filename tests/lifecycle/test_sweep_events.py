"""A sweep tells each owner's integrations about each deletion, reading the endpoints in bulk.

A mass expiry emits thousands of `item.deleted` events in one transaction; the webhooks take them as a
batch (`emit_many`): one delivery per event for each endpoint that wants it, and the owners' endpoints
read a few hundred owners a query, not one query per owner or per event.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select

from petportrait.db import new_id, session_scope
from petportrait.integrations.models import WebhookDelivery, WebhookEndpoint
from petportrait.lifecycle import sweeper
from petportrait.pets.models import Photo
from petportrait.registry import Event, Registry, emit, emit_many
from petportrait.web.app import Services
from tests.lifecycle.helpers import add_pet, add_photo, add_user

OWNERS_WITHOUT_ENDPOINTS = 620  # more than one chunk of owners (500) per query


def endpoint(owner_id: str, events: list[str], *, at: datetime, disabled: bool = False) -> WebhookEndpoint:
    return WebhookEndpoint(
        owner_id=owner_id,
        url="https://hooks.example/in",
        events=events,
        sealed_secret=b"not opened by these tests",
        created_at=at,
        disabled_at=at if disabled else None,
    )


@pytest.fixture
def endpoint_queries(services: Services) -> Iterator[list[str]]:
    """The SELECTs that read webhook endpoints, as the database saw them."""
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM webhook_endpoints" in statement:
            seen.append(statement)

    event.listen(services.engine, "before_cursor_execute", count)
    yield seen
    event.remove(services.engine, "before_cursor_execute", count)


def test_a_mass_expiry_makes_one_delivery_per_deletion_for_the_endpoints_that_want_it(
    services: Services, now: datetime, endpoint_queries: list[str]
) -> None:
    with session_scope(services.session_factory) as session:
        wants, other, off = (add_user(session, at=now) for _ in range(3))
        session.add_all(
            [
                endpoint(wants.id, ["item.deleted", "model.ready"], at=now),
                endpoint(wants.id, ["item.deleted"], at=now),
                endpoint(other.id, ["model.ready"], at=now),
                endpoint(off.id, ["item.deleted"], at=now, disabled=True),
            ]
        )
        photos: dict[str, list[str]] = {}
        for user in (wants, other, off):
            pet = add_pet(session, user.id, at=now)
            photos[user.id] = [add_photo(session, services.blobs, pet, at=now).id for _ in range(3)]
        for _ in range(OWNERS_WITHOUT_ENDPOINTS):
            user = add_user(session, at=now)
            add_photo(session, services.blobs, add_pet(session, user.id, at=now), at=now)
        wants_id = wants.id

    report = sweeper.sweep_once(
        services.session_factory, services.blobs, now=now + timedelta(days=31), settings=services.settings
    )

    assert report.purged["photo"] == 9 + OWNERS_WITHOUT_ENDPOINTS and not report.errors
    with services.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Photo)) == 0
        deliveries = list(session.scalars(select(WebhookDelivery)))
    # two endpoints of one owner want item.deleted: each gets each of the owner's three deletions
    assert {d.owner_id for d in deliveries} == {wants_id}
    assert sorted((d.endpoint_id, d.payload["data"]["item_id"]) for d in deliveries) == sorted(
        (endpoint_id, photo_id)
        for endpoint_id in {d.endpoint_id for d in deliveries}
        for photo_id in photos[wants_id]
    )
    assert len({d.endpoint_id for d in deliveries}) == 2
    assert all(d.event == "item.deleted" and d.payload["data"]["reason"] == "expired" for d in deliveries)
    # 623 owners: their endpoints were read two chunks at a time, not once per owner
    assert 1 <= len(endpoint_queries) <= 4, len(endpoint_queries)


def test_emit_many_runs_each_subscriber_once_per_event_batch_form_or_not() -> None:
    one_by_one: list[tuple[str | None, Any]] = []
    batches: list[list[tuple[str | None, Any]]] = []
    registry = Registry()
    registry.subscribe("thing.done", lambda session, e: one_by_one.append((e.owner_id, e.data["n"])))
    registry.subscribe(
        "thing.done",
        lambda session, e: pytest.fail("the batch form should have been used"),
        many=lambda session, events: batches.append([(e.owner_id, e.data["n"]) for e in events]),
    )

    class FakeSession:
        info = {"registry": registry}

    session: Any = FakeSession()
    events = emit_many(session, "thing.done", [("a", {"n": 1}), (None, {"n": 2}), ("b", {"n": 3})])
    assert [(e.name, e.owner_id, dict(e.data)) for e in events] == [
        ("thing.done", "a", {"n": 1}),
        ("thing.done", None, {"n": 2}),
        ("thing.done", "b", {"n": 3}),
    ]
    assert one_by_one == [("a", 1), (None, 2), ("b", 3)]
    assert batches == [[("a", 1), (None, 2), ("b", 3)]]
    assert emit_many(session, "thing.done", []) == [] and batches == [[("a", 1), (None, 2), ("b", 3)]]
    # a single emit uses the per-event form of every subscriber
    with pytest.raises(pytest.fail.Exception):
        emit(session, "thing.done", owner_id="c", n=4)
    assert isinstance(events[0], Event)


def test_emit_many_and_emit_make_the_same_deliveries(services: Services, now: datetime) -> None:
    with session_scope(services.session_factory) as session:
        owner = add_user(session, at=now).id
        session.add(endpoint(owner, ["item.deleted"], at=now))
    item_ids = [new_id() for _ in range(3)]
    with session_scope(services.session_factory) as session:
        emit(session, "item.deleted", owner_id=owner, kind="photo", item_id=item_ids[0], reason="expired")
        emit_many(
            session,
            "item.deleted",
            [(owner, {"kind": "photo", "item_id": item_id, "reason": "expired"}) for item_id in item_ids[1:]],
        )
    with services.session_factory() as session:
        payloads = [d.payload for d in session.scalars(select(WebhookDelivery))]
    assert sorted(p["data"]["item_id"] for p in payloads) == sorted(item_ids)
    shapes = {
        (p["type"], p["data"]["kind"], p["data"]["reason"], tuple(p["data"]["links"])) for p in payloads
    }
    assert len(shapes) == 1
