"""Deleting many blobs at once: every backend deletes what it is asked and nothing else."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from petportrait.retention import blobops
from petportrait.storage import local
from petportrait.storage.base import BlobInfo, BlobStore
from petportrait.storage.local import LocalBlobStore
from petportrait.storage.s3 import S3BlobStore

KEYS = [f"renders/u{i % 3}/job{i % 5}/a1/r{i}.png" for i in range(40)] + ["photos/u1/p/a.jpg"]


class Wrapped:
    """A store without delete_many: the bulk deleter falls back to one delete a key."""

    def __init__(self, inner: BlobStore) -> None:
        self.inner = inner
        self.name = "wrapped"

    def put(self, key: str, stream: BinaryIO) -> int:
        return self.inner.put(key, stream)

    def put_bytes(self, key: str, data: bytes) -> int:
        return self.inner.put_bytes(key, data)

    def open(self, key: str) -> BinaryIO:
        return self.inner.open(key)

    def get_bytes(self, key: str) -> bytes:
        return self.inner.get_bytes(key)

    def delete(self, key: str) -> bool:
        return self.inner.delete(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def size(self, key: str) -> int:
        return self.inner.size(key)

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        return self.inner.list(prefix)

    def check(self) -> None:
        self.inner.check()


def _exercise(store: BlobStore) -> None:
    for key in [*KEYS, "photos/u1/p/keep.jpg"]:
        store.put_bytes(key, b"x")
    failures = blobops.delete_many(store, [*KEYS, "renders/never/was/here.png"])
    assert failures == {}
    assert [b.key for b in store.list("")] == ["photos/u1/p/keep.jpg"]
    assert blobops.delete_many(store, KEYS) == {}  # deleting again is not an error


def test_local_bulk_delete_removes_files_and_empty_folders(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    _exercise(store)
    assert not (store.root / "renders").exists()
    assert (store.root / "photos" / "u1" / "p").is_dir()


def test_local_bulk_delete_refuses_keys_through_a_symlinked_folder(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.jpg").write_bytes(b"not the store's")
    (store.root / "photos" / "u1").mkdir(parents=True)
    (store.root / "photos" / "u1" / "p").symlink_to(outside, target_is_directory=True)
    failures = blobops.delete_many(store, ["photos/u1/p/victim.jpg", "../escape.jpg"])
    assert set(failures) == {"photos/u1/p/victim.jpg", "../escape.jpg"}
    assert (outside / "victim.jpg").read_bytes() == b"not the store's"


def test_local_bulk_delete_refuses_keys_below_a_symlinked_folder_higher_up(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    outside = tmp_path / "outside"
    (outside / "p").mkdir(parents=True)
    (outside / "p" / "victim.jpg").write_bytes(b"not the store's")
    store.put_bytes("photos/u2/p/mine.jpg", b"mine")
    (store.root / "photos" / "u1").symlink_to(outside, target_is_directory=True)
    failures = blobops.delete_many(store, ["photos/u1/p/victim.jpg", "photos/u2/p/mine.jpg"])
    assert set(failures) == {"photos/u1/p/victim.jpg"}
    assert (outside / "p" / "victim.jpg").read_bytes() == b"not the store's"
    assert not store.exists("photos/u2/p/mine.jpg") and (store.root / "photos" / "u1").is_symlink()


@pytest.mark.parametrize("disk", ["memory-fast", "slow-disk"])
def test_local_bulk_delete_gives_the_same_result_from_one_thread_or_many(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, disk: str
) -> None:
    """A store whose calls look slow deletes the rest of a batch from threads: same files, same folders,
    the same failures, the symlink check included."""
    monkeypatch.setattr(local, "_SLOW_CALL_SECONDS", 0.0 if disk == "slow-disk" else 3600.0)
    threads_seen: set[str] = set()
    real_unlink = os.unlink

    def unlink(path: str, *args: object, **kwargs: object) -> None:
        threads_seen.add(threading.current_thread().name)
        real_unlink(path)

    monkeypatch.setattr(local.os, "unlink", unlink)
    store = LocalBlobStore(tmp_path / "blobs")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.jpg").write_bytes(b"not the store's")
    many = [f"renders/u{i % 7}/job{i % 50}/a1/r{i}.png" for i in range(400)]
    for key in [*many, "renders/u1/keep/a1/k.png"]:
        store.put_bytes(key, b"x")
    (store.root / "photos" / "u1").mkdir(parents=True)
    (store.root / "photos" / "u1" / "p").symlink_to(outside, target_is_directory=True)
    failures = store.delete_many([*many, "photos/u1/p/victim.jpg", "../escape.jpg"], threads=4)
    assert set(failures) == {"photos/u1/p/victim.jpg", "../escape.jpg"}
    assert [b.key for b in store.list("")] == ["renders/u1/keep/a1/k.png"]
    assert sorted(p.name for p in (store.root / "renders").iterdir()) == ["u1"]
    assert (outside / "victim.jpg").exists()
    assert (len(threads_seen) > 1) == (disk == "slow-disk"), threads_seen


def test_s3_bulk_delete(new_s3_store: Callable[..., S3BlobStore]) -> None:
    _exercise(new_s3_store(prefix="tenant"))


def test_any_other_store_falls_back_to_its_own_delete(tmp_path: Path) -> None:
    _exercise(Wrapped(LocalBlobStore(tmp_path / "blobs")))
