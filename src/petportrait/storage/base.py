"""The BlobStore protocol: where the bytes of photos, model weights and renders live.

Keys are relative, '/'-separated paths of safe segments (letters, digits, '.', '_', '-'); no segment
may be empty, '.' or '..'. Every backend passes the contract suite in tests/storage/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Protocol, runtime_checkable

_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+$")


class BlobError(Exception):
    """Base of the errors a blob store raises."""


class BlobNotFound(BlobError, KeyError):
    """The key names no blob."""


class InvalidKey(BlobError, ValueError):
    """The key is not a safe relative path."""


def validate_key(key: str) -> str:
    """Return the key if it is a safe relative path, else raise InvalidKey."""
    if not key or len(key) > 1024 or key.startswith("/") or "\\" in key:
        raise InvalidKey(f"invalid blob key: {key!r}")
    for segment in key.split("/"):
        if segment in ("", ".", "..") or not _SEGMENT.match(segment):
            raise InvalidKey(f"invalid blob key: {key!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """Return the prefix if it is empty or a safe key-like prefix (it may end with one '/')."""
    if prefix == "":
        return prefix
    validate_key(prefix.removesuffix("/"))
    return prefix


@dataclass(frozen=True)
class BlobInfo:
    """What a listing says of one blob."""

    key: str
    size: int
    modified_at: datetime


@runtime_checkable
class BlobStore(Protocol):
    """A flat namespace of immutable-once-written blobs.

    - put(key, stream) writes the whole stream, atomically: a reader sees the old blob or the new one,
      never a part; it returns the number of bytes written.
    - open(key) returns a readable binary stream; the caller closes it. Raises BlobNotFound.
    - get_bytes(key) reads a whole blob. Raises BlobNotFound.
    - delete(key) removes the blob; deleting a missing key is not an error (idempotent). Returns
      whether something was deleted.
    - exists(key), size(key) (BlobNotFound if missing).
    - list(prefix) yields BlobInfo for every key that starts with prefix, in key order.
    """

    name: str

    def put(self, key: str, stream: BinaryIO) -> int: ...

    def put_bytes(self, key: str, data: bytes) -> int: ...

    def open(self, key: str) -> BinaryIO: ...

    def get_bytes(self, key: str) -> bytes: ...

    def delete(self, key: str) -> bool: ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int: ...

    def list(self, prefix: str = "") -> Iterator[BlobInfo]: ...

    def check(self) -> None:
        """Raise if the store cannot be reached or written (used by /healthz)."""
        ...


@runtime_checkable
class BulkDelete(Protocol):
    """A store that deletes many keys at once, faster than one ``delete`` a key (both built-in stores).

    ``delete_many(keys)`` deletes every key, as ``delete`` would (a missing key is not an error), and returns
    ``{key: error}`` for the keys it could not delete, an invalid key among them; the others are still
    deleted. Stores without it are deleted from one key at a time (``lifecycle.blobops.delete_many``).
    """

    def delete_many(self, keys: Sequence[str]) -> dict[str, str]: ...
