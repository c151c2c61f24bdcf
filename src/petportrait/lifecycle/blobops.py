"""Deleting many blobs at once, as fast as each backend allows.

The BlobStore protocol deletes one key at a time. The sweeper deletes thousands, so here:
- a local folder: files are unlinked (keys checked as the store checks them) and emptied folders pruned,
  from a few threads, without an fsync per folder (see _delete_local);
- S3: DeleteObjects, a thousand keys a request;
- any other store: its own delete, from a few threads.
Deleting a key that is already gone is not an error, as in the protocol.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from petportrait.storage.base import BlobStore, InvalidKey, validate_key
from petportrait.storage.local import LocalBlobStore

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
    """Unlink the files, then prune the folders left empty, each step from a few threads (it is syscalls).

    Keys are checked as the store checks them: a valid key, whose folder resolves to itself inside the
    root (no symlinked folder on the way; unlink itself never follows a link), each folder resolved once.
    Unlike LocalBlobStore.delete, folders are not fsynced one by one: a deletion that a power loss undoes
    brings back a blob whose key a tombstone names, which the sweeper's reconciliation deletes at once
    (or leaves a row still due, which the next sweep deletes again).
    """
    failures: dict[str, str] = {}
    root = str(blobs.root)
    checked: dict[str, bool] = {}

    def folder_ok(folder: str) -> bool:
        ok = checked.get(folder)
        if ok is None:
            ok = os.path.realpath(folder) == folder and folder.startswith(root + os.sep)
            checked[folder] = ok
        return ok

    def unlink(chunk: Sequence[str]) -> set[str]:
        touched: set[str] = set()
        for key in chunk:
            try:
                validate_key(key)
                path = os.path.join(root, *key.split("/"))
                folder = os.path.dirname(path)
                if not folder_ok(folder):
                    raise InvalidKey(f"blob key {key!r} resolves outside the store or through a link")
                os.unlink(path)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                continue  # gone already, or a folder of other keys (not a blob)
            except Exception as exc:
                failures[key] = f"{type(exc).__name__}: {exc}"
                continue
            touched.add(folder)
        return touched

    def prune(chunk: Sequence[str]) -> None:
        for folder in chunk:
            while folder != root and folder.startswith(root + os.sep):
                try:
                    os.rmdir(folder)
                except OSError:
                    break  # not empty (or gone already): stop here
                folder = os.path.dirname(folder)

    with ThreadPoolExecutor(_THREADS) as pool:
        folders: set[str] = set()
        for touched in pool.map(unlink, _slices(sorted(keys))):
            folders |= touched
        list(pool.map(prune, _slices(sorted(folders, key=lambda f: f.count(os.sep), reverse=True))))
    return failures


def _slices(items: Sequence[str]) -> list[Sequence[str]]:
    step = max(1, -(-len(items) // _THREADS))
    return [items[i : i + step] for i in range(0, len(items), step)]


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
