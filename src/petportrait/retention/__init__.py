"""Base services of retention: data keys (crypto-shredding) for now; policy, holds, audit and tombstones
move here from lifecycle/ (issue 11).

Nothing to register yet: the `data_keys` table has no retention rule of its own, since a key row lives
exactly as long as the item whose blob it opens (destroyed in the transaction that tombstones the item).
"""
