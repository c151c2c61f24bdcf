"""Retention, the base every domain calls: the policy (kinds, periods, read-time hiding), legal holds, the
hash-chained audit log, tombstones (deletion receipts and deleting an item now), the blob-key layout, and
data keys (crypto-shredding: deleting an item destroys the key of its blob in the same transaction).

It imports no domain: the tables of each kind are registered by their domains (`petportrait.registry`).
"""

from __future__ import annotations

from petportrait.registry import Registry


def register(registry: Registry) -> None:
    """What the retention base contributes: the retention rules of its own tables."""
    registry.add_domain("retention")
    registry.add_table_rule(
        "data_keys",
        "as long as the blob it opens: destroyed in the transaction that tombstones the item "
        "(crypto-shredding); keys of orphaned blobs when the sweeper deletes them",
        owner="retention",
    )
