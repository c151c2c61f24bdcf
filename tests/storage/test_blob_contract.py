"""The BlobStore contract: every backend (local folder, S3, S3 under a prefix) passes this one suite."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest

from petportrait.storage.base import BlobError, BlobInfo, BlobNotFound, BlobStore, BulkDelete, InvalidKey
from petportrait.storage.crypto import EncryptedBlobStore, plaintext_size

if TYPE_CHECKING:
    from conftest import PatternStream

MiB = 1024 * 1024


def keys_of(infos: Any) -> list[str]:
    return [info.key for info in infos]


def test_every_backend_implements_the_protocol(store: BlobStore) -> None:
    assert isinstance(store, BlobStore)
    assert store.name in ("local", "s3")


def test_put_bytes_round_trips_and_reports_size(store: BlobStore) -> None:
    data = bytes(range(256)) * 3
    assert store.put_bytes("photos/u1/p1/a.jpg", data) == len(data)
    assert store.get_bytes("photos/u1/p1/a.jpg") == data
    assert store.exists("photos/u1/p1/a.jpg")
    assert store.size("photos/u1/p1/a.jpg") == len(data)
    with store.open("photos/u1/p1/a.jpg") as stream:
        assert stream.read() == data


def test_put_stream_round_trips(store: BlobStore) -> None:
    assert store.put("a.bin", io.BytesIO(b"hello blob")) == 10
    assert store.get_bytes("a.bin") == b"hello blob"


def test_empty_blob_round_trips(store: BlobStore) -> None:
    assert store.put_bytes("empty", b"") == 0
    assert store.exists("empty")
    assert store.size("empty") == 0
    assert store.get_bytes("empty") == b""


def test_large_stream_round_trips_in_chunks(store: BlobStore, pattern_stream: type[PatternStream]) -> None:
    total = 20 * MiB + 12345  # over the 8 MiB multipart threshold, and not a multiple of a part
    stream = pattern_stream(total)
    assert store.put("models/m1/weights.safetensors", stream) == total  # type: ignore[arg-type]
    # The upload was read in bounded chunks, never all at once.
    assert stream.read_sizes and all(0 < size <= 8 * MiB for size in stream.read_sizes)
    assert store.size("models/m1/weights.safetensors") == total
    digest = hashlib.sha256()
    read = 0
    with store.open("models/m1/weights.safetensors") as body:
        while chunk := body.read(MiB):
            digest.update(chunk)
            read += len(chunk)
    assert read == total
    assert digest.hexdigest() == hashlib.sha256(stream.data).hexdigest()


def test_put_overwrites_an_existing_blob(store: BlobStore) -> None:
    store.put_bytes("k", b"old contents, longer")
    assert store.put_bytes("k", b"new") == 3
    assert store.get_bytes("k") == b"new"
    assert store.size("k") == 3
    assert keys_of(store.list()) == ["k"]


def test_a_put_whose_stream_fails_leaves_the_old_blob_intact(
    store: BlobStore, pattern_stream: type[PatternStream]
) -> None:
    store.put_bytes("renders/r1.png", b"the old render")
    broken = pattern_stream(3 * MiB, fail_after=2 * MiB)
    with pytest.raises(OSError, match="went away"):
        store.put("renders/r1.png", broken)  # type: ignore[arg-type]
    assert store.get_bytes("renders/r1.png") == b"the old render"
    assert keys_of(store.list()) == ["renders/r1.png"]


def test_a_failed_put_of_a_new_key_leaves_nothing(
    store: BlobStore, pattern_stream: type[PatternStream]
) -> None:
    broken = pattern_stream(12 * MiB, fail_after=9 * MiB)  # fails after the first multipart part
    with pytest.raises(OSError, match="went away"):
        store.put("renders/new.png", broken)  # type: ignore[arg-type]
    assert not store.exists("renders/new.png")
    assert list(store.list()) == []


@pytest.mark.parametrize(
    "read",
    [
        pytest.param(lambda s: s.open("missing/key.jpg"), id="open"),
        pytest.param(lambda s: s.get_bytes("missing/key.jpg"), id="get_bytes"),
        pytest.param(lambda s: s.size("missing/key.jpg"), id="size"),
    ],
)
def test_reading_a_missing_key_raises_blob_not_found(
    store: BlobStore, read: Callable[[BlobStore], object]
) -> None:
    store.put_bytes("missing/other.jpg", b"x")
    with pytest.raises(BlobNotFound) as caught:
        read(store)
    assert isinstance(caught.value, KeyError)  # callers may treat it as a missing mapping key
    assert isinstance(caught.value, BlobError)


def test_exists_is_false_for_a_missing_key(store: BlobStore) -> None:
    assert store.exists("nothing/here") is False


def test_delete_is_idempotent_and_says_whether_it_deleted(store: BlobStore) -> None:
    store.put_bytes("photos/u/p/x.jpg", b"x")
    store.put_bytes("photos/u/p/y.jpg", b"y")
    assert store.delete("photos/u/p/x.jpg") is True
    assert store.delete("photos/u/p/x.jpg") is False
    assert store.delete("never/was") is False
    assert not store.exists("photos/u/p/x.jpg")
    with pytest.raises(BlobNotFound):
        store.get_bytes("photos/u/p/x.jpg")
    assert keys_of(store.list()) == ["photos/u/p/y.jpg"]


def test_delete_many_deletes_what_it_is_asked_and_reports_what_it_could_not(store: BlobStore) -> None:
    assert isinstance(store, BulkDelete)
    doomed = [f"renders/u{i % 3}/j{i % 4}/r{i}.png" for i in range(30)]
    for key in [*doomed, "renders/u0/j0/keep.png", "photos/u/p/keep.jpg"]:
        store.put_bytes(key, b"x")

    failures = store.delete_many([*doomed, "renders/never/was.png", "../escape", "a//b"])

    assert set(failures) == {"../escape", "a//b"}  # invalid keys are refused, the rest still deleted
    assert keys_of(store.list()) == ["photos/u/p/keep.jpg", "renders/u0/j0/keep.png"]
    assert store.delete_many(doomed) == {}  # deleting again is not an error
    assert store.delete_many([]) == {}


def test_a_key_prefix_is_not_itself_a_blob(store: BlobStore) -> None:
    store.put_bytes("dir/inner/file", b"x")
    for key in ("dir", "dir/inner"):
        assert store.exists(key) is False
        with pytest.raises(BlobNotFound):
            store.get_bytes(key)
        with pytest.raises(BlobNotFound):
            store.size(key)
        assert store.delete(key) is False
    assert store.get_bytes("dir/inner/file") == b"x"


LISTING_KEYS = [
    "a.bin",
    "a/b-c.bin",
    "a/b.bin",
    "a/b/c.bin",
    "a/b/c/d",
    "a/b/z",
    "a/bc.bin",
    "a0",
    "ab/x",
    "b/y",
    "photos/u1/p1/1.jpg",
    "photos/u1/p2/1.jpg",
    "photos/u10/p1/1.jpg",
]


@pytest.fixture
def listed_store(store: BlobStore) -> BlobStore:
    # Written out of order, so that an ordered listing cannot come from insertion order.
    for number, key in enumerate(reversed(LISTING_KEYS)):
        store.put_bytes(key, b"x" * number)
    return store


def test_list_yields_every_key_in_key_order(listed_store: BlobStore) -> None:
    assert keys_of(listed_store.list()) == sorted(LISTING_KEYS)
    assert keys_of(listed_store.list("")) == sorted(LISTING_KEYS)


@pytest.mark.parametrize(
    "prefix",
    [
        "a",
        "a/",
        "a/b",
        "a/b/",
        "a/b/c",
        "a/b/c/",
        "ab",
        "photos/u1",
        "photos/u1/",
        "photos/u1/p1/1.jpg",
        "b/",
    ],
)
def test_list_by_prefix_yields_exactly_the_keys_that_start_with_it(
    listed_store: BlobStore, prefix: str
) -> None:
    expected = sorted(key for key in LISTING_KEYS if key.startswith(prefix))
    assert expected, "the case should match something"
    assert keys_of(listed_store.list(prefix)) == expected


@pytest.mark.parametrize("prefix", ["zzz", "a/b/c/d/", "a/x", "photos/u2/", "c/"])
def test_list_by_a_prefix_that_matches_nothing_is_empty(listed_store: BlobStore, prefix: str) -> None:
    assert list(listed_store.list(prefix)) == []


def test_list_reports_size_and_an_aware_modification_time(listed_store: BlobStore) -> None:
    infos = {info.key: info for info in listed_store.list()}
    for number, key in enumerate(reversed(LISTING_KEYS)):
        info = infos[key]
        assert isinstance(info, BlobInfo)
        stored = plaintext_size(info.size) if isinstance(listed_store, EncryptedBlobStore) else info.size
        assert stored == number
        assert isinstance(info.modified_at, datetime)
        assert info.modified_at.tzinfo is not None


def test_list_of_an_empty_store_is_empty(store: BlobStore) -> None:
    assert list(store.list()) == []


def test_check_passes_and_leaves_nothing_behind(store: BlobStore) -> None:
    store.check()
    assert list(store.list()) == []


INVALID_KEYS = [
    pytest.param("", id="empty"),
    pytest.param("/etc/passwd", id="absolute"),
    pytest.param("../outside", id="dotdot"),
    pytest.param("a/../../outside", id="dotdot-inside"),
    pytest.param("..", id="only-dotdot"),
    pytest.param("./a", id="dot-segment"),
    pytest.param("a\\b", id="backslash"),
    pytest.param("..\\outside", id="backslash-dotdot"),
    pytest.param("a//b", id="empty-segment"),
    pytest.param("a/", id="trailing-slash"),
    pytest.param("a\x00b", id="nul"),
    pytest.param("a\nb", id="newline"),
    pytest.param("a\x1b[2Jb", id="escape"),
    pytest.param("a\x7fb", id="delete"),
    pytest.param("a b", id="space"),
    pytest.param("caf\u00e9", id="non-ascii"),
    pytest.param("x" * 1025, id="too-long"),
]

KEY_METHODS: dict[str, Callable[[BlobStore, str], object]] = {
    "put": lambda s, k: s.put(k, io.BytesIO(b"x")),
    "put_bytes": lambda s, k: s.put_bytes(k, b"x"),
    "open": lambda s, k: s.open(k),
    "get_bytes": lambda s, k: s.get_bytes(k),
    "delete": lambda s, k: s.delete(k),
    "exists": lambda s, k: s.exists(k),
    "size": lambda s, k: s.size(k),
}


@pytest.mark.parametrize("key", INVALID_KEYS)
def test_every_method_rejects_an_invalid_key(store: BlobStore, key: str) -> None:
    for name, method in KEY_METHODS.items():
        with pytest.raises(InvalidKey) as caught:
            method(store, key)
        assert isinstance(caught.value, ValueError), name
    assert list(store.list()) == []


@pytest.mark.parametrize("prefix", ["/", "/a", "../", "a/../", "a\\", "a//", "a\x00", "a b/"])
def test_list_rejects_an_invalid_prefix(store: BlobStore, prefix: str) -> None:
    with pytest.raises(InvalidKey):
        list(store.list(prefix))
