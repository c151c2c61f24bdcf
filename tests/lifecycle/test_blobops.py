"""Deleting many blobs at once: every backend deletes what it is asked and nothing else."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from petportrait.retention import blobops
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


def test_s3_bulk_delete(new_s3_store: Callable[..., S3BlobStore]) -> None:
    _exercise(new_s3_store(prefix="tenant"))


def test_any_other_store_falls_back_to_its_own_delete(tmp_path: Path) -> None:
    _exercise(Wrapped(LocalBlobStore(tmp_path / "blobs")))
