"""Deleting many blobs at once, as fast as each backend allows.

The BlobStore protocol deletes one key at a time. The sweeper deletes thousands, so here:
- a local folder: each file is unlinked (keys are checked as the store checks them), then each touched
  folder is fsynced once and pruned if empty, instead of once per file;
- S3: DeleteObjects, a thousand keys a request;
- any other store: its own delete, from a few threads.
Deleting a key that is already gone is not an error, as in the protocol.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from petportrait.storage.base import BlobStore
from petportrait.storage.local import LocalBlobStore, _fsync_dir

_THREADS = 8


def delete_many(blobs: BlobStore, keys: Sequence[str]) -> dict[str, str]:
    """Delete every key; returns {key: error} for those that could not be deleted (empty when all were)."""
    if not keys:
        return {}
    if isinstance(blobs, LocalBlobStore):
        return _delete_local(blobs, keys)
    if getattr(blobs, "name", None) == "s3" and hasattr(blobs, "client"):
        return _delete_s3(blobs, keys)
    return _delete_each(blobs, keys)


def _delete_local(blobs: LocalBlobStore, keys: Sequence[str]) -> dict[str, str]:
    failures: dict[str, str] = {}
    folders: set[Path] = set()
    for key in keys:
        try:
            path = blobs._path(key)
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except IsADirectoryError:
            continue  # a folder of other keys is not a blob
        except Exception as exc:
            failures[key] = f"{type(exc).__name__}: {exc}"
            continue
        folders.add(path.parent)
    # Deepest first, so that pruning a folder never races the fsync of one below it.
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        _fsync_dir(folder)
        blobs._prune_empty_folders(folder)
    return failures


def _delete_s3(blobs: BlobStore, keys: Sequence[str]) -> dict[str, str]:
    from petportrait.storage.s3 import S3BlobStore

    assert isinstance(blobs, S3BlobStore)
    failures: dict[str, str] = {}
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        objects = []
        for key in chunk:
            try:
                objects.append({"Key": blobs._object_key(key)})
            except Exception as exc:
                failures[key] = f"{type(exc).__name__}: {exc}"
        if not objects:
            continue
        response = blobs.client.delete_objects(
            Bucket=blobs.bucket,
            Delete={"Objects": objects, "Quiet": True},  # type: ignore[typeddict-item]
        )
        for error in response.get("Errors", []):
            key = str(error.get("Key", ""))[len(blobs.prefix) :]
            failures[key] = f"{error.get('Code', 'Error')}: {error.get('Message', '')}"
    return failures


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
