"""What only the local folder store must prove: no escape from the root, no stray temporary files."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from petportrait.settings import Settings, StorageSettings
from petportrait.storage import create_blob_store
from petportrait.storage.base import InvalidKey
from petportrait.storage.local import KeyConflict, LocalBlobStore

if TYPE_CHECKING:
    from conftest import PatternStream

MiB = 1024 * 1024


def all_files(folder: Path) -> list[str]:
    """Every file and link under folder, dotfiles included, as sorted relative paths."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            found.append(os.path.relpath(os.path.join(dirpath, name), folder))
    return sorted(found)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "data" / "blobs"


@pytest.fixture
def local(root: Path) -> LocalBlobStore:
    return LocalBlobStore(root)


def test_keys_map_to_files_under_the_root(local: LocalBlobStore, root: Path) -> None:
    local.put_bytes("photos/u/p/a.jpg", b"abc")
    assert (root / "photos" / "u" / "p" / "a.jpg").read_bytes() == b"abc"
    assert all_files(root) == ["photos/u/p/a.jpg"]


@pytest.mark.parametrize("key", ["../escape", "../../escape", "a/../../escape", "/tmp/escape", "..\\escape"])
def test_a_key_cannot_write_outside_the_root(local: LocalBlobStore, tmp_path: Path, key: str) -> None:
    before = all_files(tmp_path)
    with pytest.raises(InvalidKey):
        local.put_bytes(key, b"pwned")
    assert all_files(tmp_path) == before
    assert not Path("/tmp/escape").exists()


def test_a_symlink_inside_the_root_is_not_followed(local: LocalBlobStore, root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"not yours")
    (root / "link").symlink_to(outside, target_is_directory=True)
    (root / "filelink").symlink_to(outside / "secret")

    with pytest.raises(InvalidKey):
        local.put_bytes("link/new", b"pwned")
    with pytest.raises(InvalidKey):
        local.get_bytes("link/secret")
    with pytest.raises(InvalidKey):
        local.get_bytes("filelink")
    with pytest.raises(InvalidKey):
        local.delete("link/secret")
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_bytes() == b"not yours"
    assert list(local.list()) == []  # links are never listed


def test_a_failed_put_leaves_no_temporary_file_and_the_old_blob_intact(
    local: LocalBlobStore, root: Path, pattern_stream: type[PatternStream]
) -> None:
    local.put_bytes("photos/u/p/a.jpg", b"old")
    with pytest.raises(OSError, match="went away"):
        local.put("photos/u/p/a.jpg", pattern_stream(5 * MiB, fail_after=3 * MiB))  # type: ignore[arg-type]
    assert all_files(root) == ["photos/u/p/a.jpg"]
    assert local.get_bytes("photos/u/p/a.jpg") == b"old"


def test_a_put_interrupted_by_keyboard_interrupt_also_cleans_up(local: LocalBlobStore, root: Path) -> None:
    class Interrupted(io.RawIOBase):
        def read(self, size: int = -1) -> bytes:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        local.put("x/y", Interrupted())  # type: ignore[arg-type]
    assert all_files(root) == []


def test_temporary_and_foreign_files_are_never_listed(local: LocalBlobStore, root: Path) -> None:
    local.put_bytes("photos/a.jpg", b"a")
    (root / ".~put-abc123.tmp").write_bytes(b"half a write")
    (root / "photos" / ".~put-def456.tmp").write_bytes(b"half a write")
    (root / "photos" / "with space.jpg").write_bytes(b"not a key")
    assert [info.key for info in local.list()] == ["photos/a.jpg"]
    assert [info.key for info in local.list("photos/")] == ["photos/a.jpg"]


def test_an_open_reader_keeps_the_old_bytes_when_the_blob_is_replaced(local: LocalBlobStore) -> None:
    local.put_bytes("k", b"old" * 1000)
    with local.open("k") as reader:
        local.put_bytes("k", b"new")
        assert reader.read() == b"old" * 1000
    assert local.get_bytes("k") == b"new"


def test_delete_removes_emptied_folders_but_never_the_root(local: LocalBlobStore, root: Path) -> None:
    local.put_bytes("photos/u/p1/a.jpg", b"a")
    local.put_bytes("photos/u/p2/b.jpg", b"b")
    assert local.delete("photos/u/p1/a.jpg")
    assert not (root / "photos" / "u" / "p1").exists()
    assert (root / "photos" / "u" / "p2").is_dir()
    assert local.delete("photos/u/p2/b.jpg")
    assert root.is_dir()
    assert list(root.iterdir()) == []
    local.put_bytes("photos/u/p1/a.jpg", b"again")  # folders come back when needed
    assert local.get_bytes("photos/u/p1/a.jpg") == b"again"


def test_a_key_cannot_be_both_a_blob_and_a_folder(local: LocalBlobStore, root: Path) -> None:
    local.put_bytes("a", b"blob a")
    with pytest.raises(KeyConflict):
        local.put_bytes("a/b", b"x")
    local.put_bytes("c/d", b"blob c/d")
    with pytest.raises(KeyConflict):
        local.put_bytes("c", b"x")
    assert local.get_bytes("a") == b"blob a"
    assert local.get_bytes("c/d") == b"blob c/d"
    assert all_files(root) == ["a", "c/d"]


def test_check_writes_and_removes_a_probe(local: LocalBlobStore, root: Path) -> None:
    local.check()
    assert all_files(root) == []


def test_check_raises_when_the_root_cannot_be_written(local: LocalBlobStore, root: Path) -> None:
    shutil.rmtree(root)
    root.write_bytes(b"a file where the folder should be")
    with pytest.raises(OSError):
        local.check()


def test_create_blob_store_builds_a_local_store_at_blob_root(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "var")  # type: ignore[call-arg]
    store = create_blob_store(settings)
    assert isinstance(store, LocalBlobStore)
    assert store.root == (tmp_path / "var" / "blobs").resolve()
    store.put_bytes("k", b"v")
    assert (tmp_path / "var" / "blobs" / "k").read_bytes() == b"v"

    custom = Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=tmp_path / "var", storage=StorageSettings(root=tmp_path / "elsewhere")
    )
    assert create_blob_store(custom).root == (tmp_path / "elsewhere").resolve()  # type: ignore[attr-defined]
