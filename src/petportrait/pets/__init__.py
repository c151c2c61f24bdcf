"""Pets and their photos (the `photo` kind of the retention policy)."""

from __future__ import annotations

from petportrait.pets.models import Photo
from petportrait.registry import Registry


def register(registry: Registry) -> None:
    """What the pets domain contributes: the table of photos."""
    registry.add_domain("pets")
    registry.add_item_kind("photo", Photo)
    registry.add_table_rule(
        "pets",
        "kept while the account exists; deleted by the sweeper once an erased account's items are gone",
        owner="pets",
    )
