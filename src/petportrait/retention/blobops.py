"""Deleting many blobs at once, as fast as each backend allows.

Stores that implement ``BulkDelete`` (the local folder and S3 both do) delete the whole list themselves; any
other store deletes one key at a time, from a few threads. Deleting a key that is already gone is not an
error, as in the protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from petportrait.storage.base import BlobStore, BulkDelete

_THREADS = 8


def delete_many(blobs: BlobStore, keys: Sequence[str]) -> dict[str, str]:
    """Delete every key; returns {key: error} for those that could not be deleted (empty when all were)."""
    if not keys:
        return {}
    if isinstance(blobs, BulkDelete):
        return blobs.delete_many(keys)
    return _delete_each(blobs, keys)


def _delete_each(blobs: BlobStore, keys: Sequence[str]) -> dict[str, str]:
    failures: dict[str, str] = {}

    def one(key: str) -> None:
        try:
            blobs.delete(key)
        except Exception as exc:
            failures[key] = f"{type(exc).__name__}: {exc}"

    with ThreadPoolExecutor(_THREADS) as pool:
        list(pool.map(one, keys))
    return failures
