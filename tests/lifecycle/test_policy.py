"""The retention policy as code: every stored kind listed, periods only shortened, expiry to the second."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from petportrait.db import session_scope
from petportrait.errors import Gone
from petportrait.models import metadata
from petportrait.registry import Registry, RegistryError, Services
from petportrait.retention import policy
from petportrait.services import build_registry
from petportrait.settings import RetentionSettings, Settings
from tests.lifecycle.helpers import add_model, add_pet, add_photo, add_render, add_user

# Tables that have a storage_key but are not stored items of their own. A table added with a storage_key
# column must be listed in retention/policy.py, or here with the reason, or this test fails.
# data_keys: the wrapped data key of a blob, destroyed in the transaction that tombstones its item.
NOT_ITEMS: set[str] = {"data_keys"}
FULL = RetentionSettings()  # the policy's own periods


def test_every_table_that_stores_blobs_is_a_listed_kind() -> None:
    registry = build_registry()
    item_tables = {model.__table__.name for model in registry.item_models.values()}
    with_blobs = {table.name for table in metadata.sorted_tables if "storage_key" in table.columns}
    with_blobs -= {"tombstones"} | NOT_ITEMS
    unlisted = with_blobs - item_tables
    assert not unlisted, f"tables storing blobs without a retention rule in lifecycle/policy.py: {unlisted}"
    assert set(registry.item_models) == set(policy.KINDS)


def test_the_policy_lists_each_kind_with_its_clock_and_period() -> None:
    table = {k.name: (k.prefix, k.clock, k.policy_days) for k in policy.KINDS.values()}
    assert table == {
        "photo": ("photos/", "uploaded_at", 30),
        "model": ("models/", "trained_at", 7),
        "render": ("renders/", "rendered_at", 30),
        "marketing": ("marketing/", "consent", None),
    }
    assert policy.period("photo", FULL) == timedelta(days=30)
    assert policy.period("model", FULL) == timedelta(days=7)
    assert policy.period("render", FULL) == timedelta(days=30)
    assert policy.period("marketing", FULL) is None


def test_prefixes_do_not_overlap_and_name_their_kind() -> None:
    prefixes = [k.prefix for k in policy.KINDS.values()]
    for a in prefixes:
        for b in prefixes:
            assert a == b or not a.startswith(b)
    assert policy.kind_for_key("models/u/j/a1/m.safetensors") == policy.KINDS["model"]
    assert policy.kind_for_key("thumbnails/x.png") is None


def test_settings_may_shorten_a_period() -> None:
    retention = RetentionSettings(photo_days=3, model_days=0.5, render_days=29)
    assert policy.period("photo", retention) == timedelta(days=3)
    assert policy.period("model", retention) == timedelta(hours=12)
    assert policy.period("render", retention) == timedelta(days=29)


@pytest.mark.parametrize("field", ["photo_days", "model_days", "render_days"])
def test_settings_may_never_lengthen_a_period(field: str) -> None:
    with pytest.raises(ValidationError, match="longer than the data policy"):
        Settings(retention={field: 31})  # type: ignore[arg-type]
    # Even a value that slipped past validation is refused where the period is read.
    sneaky = RetentionSettings.model_construct(**{field: 400.0})
    with pytest.raises(ValueError, match="longer than the policy"):
        policy.period(field.removesuffix("_days"), sneaky)


def test_backstop_is_a_day_after_the_policy() -> None:
    assert policy.backstop_days("photo", FULL) == 31
    assert policy.backstop_days("model", FULL) == 8
    assert policy.backstop_days("render", FULL) == 31
    assert policy.backstop_days("model", RetentionSettings(model_days=2.5)) == 4
    assert policy.backstop_days("marketing", FULL) is None


def test_expiry_to_the_second_in_python_and_in_sql_agree(services: Services, now: datetime) -> None:
    with session_scope(services.session_factory) as session:
        user = add_user(session, at=now)
        pet = add_pet(session, user.id, at=now)
        items = {
            "photo": add_photo(session, services.blobs, pet, at=now),
            "model": add_model(session, services.blobs, pet, at=now),
            "render": add_render(session, services.blobs, pet, at=now),
        }
    periods = {"photo": 30, "model": 7, "render": 30}
    with services.session_factory() as session:
        for kind, item in items.items():
            model = services.registry.item_models[kind]
            expiry = now + timedelta(days=periods[kind])
            for at, expired in ((expiry - timedelta(seconds=1), False), (expiry, True)):
                assert policy.is_expired(item, at, settings=FULL) is expired, (kind, at)
                live_ids = session.scalars(
                    select(model.id).where(policy.live_clause(model, now=at, settings=FULL))
                ).all()
                gone_ids = session.scalars(
                    select(model.id).where(policy.expired_clause(model, now=at, settings=FULL))
                ).all()
                assert (item.id in live_ids, item.id in gone_ids) == (not expired, expired), (kind, at)


def test_a_shortened_setting_expires_items_stored_before_it(services: Services, now: datetime) -> None:
    with session_scope(services.session_factory) as session:
        user = add_user(session, at=now)
        photo = add_photo(session, services.blobs, add_pet(session, user.id, at=now), at=now)
    short = RetentionSettings(photo_days=1)
    assert not policy.is_expired(photo, now + timedelta(days=1, seconds=-1), settings=short)
    assert policy.is_expired(photo, now + timedelta(days=1), settings=short)
    assert policy.due_at(photo, short) == now + timedelta(days=1)
    assert policy.due_at(photo, FULL) == now + timedelta(days=30)


def test_a_model_still_training_never_expires(services: Services, now: datetime) -> None:
    with session_scope(services.session_factory) as session:
        user = add_user(session, at=now)
        model = add_model(session, services.blobs, add_pet(session, user.id, at=now), at=now)
        model.trained_at = model.expires_at = model.storage_key = None
        model.state = "training"
    assert not policy.is_expired(model, now + timedelta(days=400), settings=FULL)
    with services.session_factory() as session:
        model_cls = services.registry.item_models["model"]
        live = session.scalars(
            select(model_cls.id).where(
                policy.live_clause(model_cls, now=now + timedelta(days=400), settings=FULL)
            )
        ).all()
    assert live == [model.id]


def test_a_direct_link_to_an_expired_item_is_410_with_its_code(services: Services, now: datetime) -> None:
    with session_scope(services.session_factory) as session:
        user = add_user(session, at=now)
        render = add_render(session, services.blobs, add_pet(session, user.id, at=now), at=now)
    policy.ensure_live(render, now + timedelta(days=30, seconds=-1), settings=FULL)
    with pytest.raises(Gone) as gone:
        policy.ensure_live(render, now + timedelta(days=30), settings=FULL)
    assert gone.value.status == 410 and gone.value.code == "render_expired"
    assert "(30 days)" in gone.value.detail
    with pytest.raises(Gone) as shortened:
        policy.ensure_live(render, now + timedelta(days=2), settings=RetentionSettings(render_days=1.5))
    assert "(1.5 days)" in shortened.value.detail


def test_kind_of_refuses_an_unlisted_table() -> None:
    from petportrait.accounts.models import User

    with pytest.raises(ValueError, match="not a kind"):
        policy.kind_of(User)
    with pytest.raises(RegistryError, match="not in the retention policy"):
        Registry().add_item_kind("thumbnail", User)
