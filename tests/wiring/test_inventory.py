"""The data inventory: every place is declared once with what it holds, its source and its end, and the rules
that read it are each written once (a second copy is a place a new store can be forgotten)."""

from __future__ import annotations

import re
from pathlib import Path

from petportrait.models import metadata
from petportrait.registry import MEDIA
from petportrait.services import build_registry

SRC = Path(__file__).resolve().parents[2] / "src" / "petportrait"


def _sources() -> dict[str, str]:
    return {str(p.relative_to(SRC)): p.read_text() for p in SRC.rglob("*.py") if "migrations" not in p.parts}


def test_every_table_and_place_is_declared_with_its_source_and_end() -> None:
    registry = build_registry()
    stores = registry.stores
    missing = sorted(set(metadata.tables) - set(stores))
    assert missing == [], f"tables without an inventory entry: {missing}"
    for store in stores.values():
        assert store.medium in MEDIA
        assert store.holds and store.source and store.ends and store.owner, store
    media = {s.medium for s in stores.values()}
    assert {"table", "folder", "queue", "redis", "log", "blobs"} <= media


def test_copies_that_name_items_end_with_them() -> None:
    """Stored answers and messages name items: each declares how it ends with them."""
    stores = build_registry().stores
    for name in ("idempotency_keys", "outbox_messages"):
        assert stores[name].ends_with_subjects is not None, name


def test_the_owner_erased_rule_and_the_expiry_stamp_are_written_once() -> None:
    erased = re.compile(r"deleted_at\.is_not\(None\)|deleted_at is not None")
    stamp = re.compile(r"timedelta\(days=settings\.retention\.(photo|model|render)_days\)")
    twice = {
        path: [rule for rule, pattern in (("erased", erased), ("stamp", stamp)) if pattern.search(text)]
        for path, text in _sources().items()
    }
    # the accounts domain owns the rule; the metrics measure erasures' ages
    offenders = {
        path: rules
        for path, rules in twice.items()
        if rules and not path.startswith("accounts/") and path != "lifecycle/metrics.py"
    }
    assert offenders == {}, offenders
