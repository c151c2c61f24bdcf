"""Base services of retention: data keys (crypto-shredding) for now; policy, holds, audit and tombstones
move here from lifecycle/ (issue 11).

`register(registry)` (called by the composition root) records the retention rule of `data_keys`: a key
row lives exactly as long as the item whose blob it opens; it is destroyed in the transaction that
tombstones the item (`retention.keys.destroy_keys`).
"""

from __future__ import annotations

from typing import Protocol


class _TableRules(Protocol):
    """The part of petportrait.registry.Registry used here (retention sits below the registry's layer)."""

    def add_table_rule(self, table: str, rule: str, *, owner: str) -> None: ...


def register(registry: _TableRules) -> None:
    """What the retention base service contributes: the retention rule of its `data_keys` table."""
    registry.add_table_rule(
        "data_keys",
        "as long as the blob it opens: destroyed in the transaction that tombstones the item "
        "(crypto-shredding); keys of derived and orphaned blobs when the sweeper deletes them",
        owner="retention",
    )
