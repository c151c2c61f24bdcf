"""The retention policy at its edges (what mutation testing showed untested): the second a shortened setting
ends an item in SQL as in Python, an item judged by expires_at alone, periods in words, the S3 backstop of a
period just over whole days, and the registry's check of each kind's clock column and rule."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import select

from petportrait.db import session_scope
from petportrait.errors import Gone
from petportrait.registry import Registry, RegistryError
from petportrait.retention import policy
from petportrait.services import build_registry
from petportrait.settings import RetentionSettings
from petportrait.web.app import Services
from tests.conftest import make_settings
from tests.lifecycle.helpers import add_model, add_pet, add_photo, add_user

FULL = RetentionSettings()


def _judged(
    services: Services, item: Any, at: datetime, settings: RetentionSettings
) -> tuple[bool, bool, bool]:
    """(expired in Python, live in SQL, expired in SQL) of one item at `at`."""
    model = type(item)
    with services.session_factory() as session:
        live = (
            item.id
            in session.scalars(
                select(model.id).where(policy.live_clause(model, now=at, settings=settings))
            ).all()
        )
        gone = (
            item.id
            in session.scalars(
                select(model.id).where(policy.expired_clause(model, now=at, settings=settings))
            ).all()
        )
    return policy.is_expired(item, at, settings=settings), live, gone


LIVE = (False, True, False)
EXPIRED = (True, False, True)


def test_a_shortened_setting_ends_an_item_at_the_second_in_sql_as_in_python(
    services: Services, now: datetime
) -> None:
    """Stamped for 30 days, then the setting is shortened to one day: the clock column decides."""
    with session_scope(services.session_factory) as session:
        photo = add_photo(
            session, services.blobs, add_pet(session, add_user(session, at=now).id, at=now), at=now
        )
    short = RetentionSettings(photo_days=1)
    assert _judged(services, photo, now + timedelta(days=1, seconds=-1), short) == LIVE
    assert _judged(services, photo, now + timedelta(days=1), short) == EXPIRED
    assert _judged(services, photo, now + timedelta(days=1), FULL) == LIVE


def test_an_item_stamped_shorter_than_the_period_ends_at_its_expires_at(
    services: Services, now: datetime
) -> None:
    with session_scope(services.session_factory) as session:
        pet = add_pet(session, add_user(session, at=now).id, at=now)
        photo = add_photo(session, services.blobs, pet, at=now, days=1)
    assert _judged(services, photo, now + timedelta(days=1, seconds=-1), FULL) == LIVE
    assert _judged(services, photo, now + timedelta(days=1), FULL) == EXPIRED


def test_an_item_without_its_clock_is_judged_by_expires_at_alone(services: Services, now: datetime) -> None:
    with session_scope(services.session_factory) as session:
        pet = add_pet(session, add_user(session, at=now).id, at=now)
        model = add_model(session, services.blobs, pet, at=now)
        model.trained_at = None  # its period never started: expires_at alone says when it ends
    assert policy.due_at(model, FULL) == now + timedelta(days=7)
    assert _judged(services, model, now + timedelta(days=7, seconds=-1), FULL) == LIVE
    assert _judged(services, model, now + timedelta(days=7), FULL) == EXPIRED


def test_an_item_not_stored_yet_is_live_whatever_its_clock_says(services: Services, now: datetime) -> None:
    with session_scope(services.session_factory) as session:
        pet = add_pet(session, add_user(session, at=now).id, at=now)
        model = add_model(session, services.blobs, pet, at=now)
        model.expires_at = None  # trained, its file not stored yet
    assert policy.due_at(model, FULL) is None
    assert _judged(services, model, now + timedelta(days=400), FULL) == LIVE


@pytest.mark.parametrize(
    ("length", "words"),
    [
        (timedelta(days=1), "1 day"),
        (timedelta(days=2), "2 days"),
        (timedelta(days=30), "30 days"),
        (timedelta(seconds=90721), "1.1 days"),  # 1.0500116 days: rounded to one decimal, up
        (timedelta(days=1, hours=3), "1.1 days"),
        (timedelta(hours=1), "1 hour"),
        (timedelta(hours=12), "12 hours"),
        (timedelta(seconds=3780), "1.1 hours"),
        (timedelta(minutes=1), "1 minute"),
        (timedelta(minutes=50), "50 minutes"),
        (timedelta(seconds=10), "1 minute"),
    ],
)
def test_a_period_in_words(length: timedelta, words: str) -> None:
    assert policy.describe(length) == words


def test_a_kind_bound_to_an_event_is_described_in_its_own_words() -> None:
    assert policy.days("marketing", FULL) == "while it is needed"
    assert policy.days("model", RetentionSettings(model_days=0.5)) == "12 hours"


def test_the_backstop_of_a_period_just_over_whole_days_rounds_up() -> None:
    assert policy.backstop_days("model", RetentionSettings(model_days=86401 / 86400)) == 3
    assert policy.backstop_days("model", RetentionSettings(model_days=1)) == 2


def test_the_registry_checks_each_kinds_clock_column_and_records_its_rule() -> None:
    from petportrait.portraits.models import Render

    registry = Registry(item_kinds=policy.item_kinds())
    with pytest.raises(RegistryError, match="has no uploaded_at column"):
        registry.add_item_kind("photo", Render)  # a render has no uploaded_at
    rules = build_registry().table_rules
    photo_rule = next(rule.rule for rule in rules.values() if rule.owner == "photo")
    assert photo_rule == policy.KINDS["photo"].description_of_rule() and "30 days" in photo_rule


def test_kind_of_names_an_unlisted_row_in_its_error() -> None:
    from petportrait.accounts.models import User

    with pytest.raises(ValueError, match="User is not a kind"):
        policy.kind_of(User())


def test_the_period_is_read_from_whole_settings_as_from_retention_settings(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, retention={"photo_days": 2})
    assert policy.period("photo", settings) == timedelta(days=2)
    assert policy.period("photo", settings.retention) == timedelta(days=2)
    assert policy.policy_period("photo") == timedelta(days=30)
    assert policy.policy_period("model") == timedelta(days=7)
    assert policy.policy_period("marketing") is None


@dataclass
class _MarketingCopy:
    """A row of the event-bound kind as ensure_live sees one (it reads only these attributes)."""

    expires_at: datetime
    consent: None = None
    retention_kind: ClassVar[str] = "marketing"


def test_an_expired_copy_of_an_event_bound_kind_is_gone_in_its_own_words(now: datetime) -> None:
    with pytest.raises(Gone) as gone:
        policy.ensure_live(_MarketingCopy(expires_at=now), now, settings=FULL)
    assert gone.value.code == "marketing_expired"
    assert gone.value.detail == "This marketing copy is no longer kept and has been deleted."
