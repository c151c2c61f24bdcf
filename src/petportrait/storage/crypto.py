"""Envelope encryption of blobs: every blob sealed with AES-256-GCM under a data key of its own.

A data key is 32 random bytes, stored only wrapped by the key-encryption key (KEK): AES-256-GCM of the
data key, with the storage key as associated data, so a wrapped key moved to another blob's row does not
open. Destroying a blob's wrapped key (crypto-shredding) makes every copy of the blob unreadable at once:
bucket versions, replicas, backups of the blob store, a worker's leftovers.

Blob format (version 1), streamed in segments so neither side holds a whole blob in memory:

    header   = MAGIC (4 bytes) | version (1) | segment size S (4, big-endian) | nonce prefix (7, random)
    segments = AES-256-GCM(data key, nonce_i, plaintext_i, aad = header | storage key)   (each S + 16 bytes,
               the last one 16..S + 16 bytes)
    nonce_i  = nonce prefix | i (4, big-endian) | 1 if last else 0 (1)

This is the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015), as in Tink's streaming AEAD:
a segment cannot be reordered, dropped, truncated or moved to another blob (the storage key and header
are authenticated with every segment), and a reader gets only plaintext that has been authenticated.

`EncryptedBlobStore(inner, keys, kek)` implements the BlobStore protocol (and BulkDelete) over any store;
`KeyStore` is where wrapped keys live (the database, in the service: `petportrait.retention.keys`).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import os
import struct
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from petportrait.storage.base import BlobError, BlobInfo, BlobNotFound, BlobStore, BulkDelete, validate_key

log = logging.getLogger(__name__)

MAGIC = b"\x89PPB"  # non-ASCII first byte, like PNG's: no text, JPEG, PNG or safetensors file starts so
VERSION = 1
SEGMENT_SIZE = 256 * 1024
TAG_SIZE = 16
_NONCE_PREFIX = 7
HEADER_SIZE = len(MAGIC) + 1 + 4 + _NONCE_PREFIX
_HEADER = struct.Struct(">4sBI7s")
_WRAP_VERSION = 1
_WRAP_AAD = b"petportrait data key v1\x00"
KEK_SIZE = 32


class BlobDecryptError(BlobError):
    """The blob does not decrypt: tampered with, truncated, or wrapped under another KEK."""


class DataKeyMissing(BlobNotFound):
    """The blob is encrypted but its data key is gone: the item was deleted (crypto-shredded)."""


class PlaintextBlob(BlobError):
    """The blob is stored in plaintext where this store refuses plaintext."""


@runtime_checkable
class KeyStore(Protocol):
    """Where the wrapped data keys live, one per storage key.

    - put_if_absent(storage_key, wrapped) stores `wrapped` unless a key is stored already, and returns
      the one stored (so every writer of a storage key agrees on one data key); it is durable on return.
    - get(storage_key) returns the wrapped key, or None.
    - destroy(storage_keys) deletes the keys now, in a transaction of its own; returns how many.
    """

    def put_if_absent(self, storage_key: str, wrapped: bytes) -> bytes: ...

    def get(self, storage_key: str) -> bytes | None: ...

    def destroy(self, storage_keys: Sequence[str]) -> int: ...


class MemoryKeyStore:
    """A KeyStore in a dict (tests, benchmarks, tools); the service keeps keys in the database."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}

    def put_if_absent(self, storage_key: str, wrapped: bytes) -> bytes:
        return self.keys.setdefault(storage_key, wrapped)

    def get(self, storage_key: str) -> bytes | None:
        return self.keys.get(storage_key)

    def destroy(self, storage_keys: Sequence[str]) -> int:
        return sum(1 for key in storage_keys if self.keys.pop(key, None) is not None)


# -- keys ------------------------------------------------------------------------------------------


def kek_id(kek: bytes) -> bytes:
    """An 8-byte fingerprint of a KEK, kept with each wrapped key (names the KEK, reveals nothing)."""
    return hashlib.sha256(b"petportrait kek id\x00" + kek).digest()[:8]


def kek_check_value(kek: bytes) -> str:
    """The check value of a KEK (HMAC-SHA256 of a fixed label, hex): stored in the database so that a
    process started with another KEK is refused; it proves which key is meant and reveals nothing of it."""
    return hmac.new(kek, b"petportrait kek check v1", hashlib.sha256).hexdigest()


def wrapped_kek_id(wrapped: bytes) -> bytes:
    """The id of the KEK a wrapped key was wrapped under (see wrap_key)."""
    return wrapped[1:9]


def unwrap_with_any(keks: Sequence[bytes], wrapped: bytes, storage_key: str) -> bytes:
    """Unwrap with whichever of `keks` wrapped it (during a KEK rotation, the new one or the previous)."""
    wanted = wrapped_kek_id(wrapped)
    for kek in keks[1:]:
        if kek_id(kek) == wanted:
            return unwrap_key(kek, wrapped, storage_key)
    return unwrap_key(keks[0], wrapped, storage_key)


_SEAL_AAD = b"petportrait sealed value v1\x00"


def seal_value(data_key: bytes, value: bytes, name: str) -> bytes:
    """A small value (a secret) sealed under a data key, bound to its name: nonce | AES-256-GCM."""
    nonce = os.urandom(12)
    return nonce + AESGCM(data_key).encrypt(nonce, value, _SEAL_AAD + name.encode())


def open_value(data_key: bytes, sealed: bytes, name: str) -> bytes:
    """A value sealed by seal_value; BlobDecryptError if it was changed or moved to another name."""
    try:
        return AESGCM(data_key).decrypt(sealed[:12], sealed[12:], _SEAL_AAD + name.encode())
    except InvalidTag as exc:
        raise BlobDecryptError(f"the sealed value {name!r} does not open") from exc


def wrap_key(kek: bytes, data_key: bytes, storage_key: str) -> bytes:
    """The data key sealed under the KEK, bound to its storage key: version | kek id | nonce | ciphertext."""
    nonce = os.urandom(12)
    sealed = AESGCM(kek).encrypt(nonce, data_key, _WRAP_AAD + storage_key.encode())
    return bytes([_WRAP_VERSION]) + kek_id(kek) + nonce + sealed


def unwrap_key(kek: bytes, wrapped: bytes, storage_key: str) -> bytes:
    """The data key of a wrapped key; BlobDecryptError if it is not this KEK's key for this storage key."""
    if len(wrapped) != 1 + 8 + 12 + 32 + TAG_SIZE or wrapped[0] != _WRAP_VERSION:
        raise BlobDecryptError(f"the data key of {storage_key!r} is malformed")
    if wrapped[1:9] != kek_id(kek):
        raise BlobDecryptError(
            f"the data key of {storage_key!r} was wrapped under another key-encryption key "
            f"(id {wrapped[1:9].hex()}, ours {kek_id(kek).hex()})"
        )
    try:
        return AESGCM(kek).decrypt(wrapped[9:21], wrapped[21:], _WRAP_AAD + storage_key.encode())
    except InvalidTag as exc:
        raise BlobDecryptError(f"the data key of {storage_key!r} does not unwrap") from exc


# -- the format --------------------------------------------------------------------------------------


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    if index >= 2**32:
        raise BlobError("blob too large for one data key (more than 2**32 segments)")
    return prefix + struct.pack(">IB", index, 1 if last else 0)


def _read_exactly(stream: Any, size: int) -> bytes:
    """Up to `size` bytes, fewer only at the end of the stream (streams may return short reads)."""
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def parse_header(header: bytes) -> tuple[int, bytes] | None:
    """(segment size, nonce prefix) of an encrypted blob's header; None if it is not one."""
    if len(header) < HEADER_SIZE or header[: len(MAGIC)] != MAGIC:
        return None
    _, version, segment, prefix = _HEADER.unpack(header[:HEADER_SIZE])
    if version != VERSION or not 16 <= segment <= 64 * 1024 * 1024:
        raise BlobDecryptError(f"unknown blob format version {version} or segment size {segment}")
    return segment, prefix


def is_encrypted(head: bytes) -> bool:
    """Whether bytes that start a blob start an encrypted one (see the module docstring)."""
    return head[: len(MAGIC)] == MAGIC


def plaintext_size(stored_size: int, segment: int = SEGMENT_SIZE) -> int:
    """The plaintext length of an encrypted blob of `stored_size` bytes."""
    body = stored_size - HEADER_SIZE
    segments = max(1, -(-body // (segment + TAG_SIZE)))
    return body - segments * TAG_SIZE


def encrypt(data: bytes, *, data_key: bytes, storage_key: str, segment: int = SEGMENT_SIZE) -> bytes:
    """A whole blob, sealed (see the module docstring)."""
    prefix = os.urandom(_NONCE_PREFIX)
    header = _HEADER.pack(MAGIC, VERSION, segment, prefix)
    aad = header + storage_key.encode()
    aead = AESGCM(data_key)
    count = max(1, -(-len(data) // segment))
    parts = [header]
    for index in range(count):
        chunk = data[index * segment : (index + 1) * segment]
        parts.append(aead.encrypt(_nonce(prefix, index, index == count - 1), chunk, aad))
    return b"".join(parts)


def decrypt(blob: bytes, *, data_key: bytes, storage_key: str) -> bytes:
    """A whole sealed blob, opened; BlobDecryptError if any of it was changed, cut or moved."""
    parsed = parse_header(blob)
    if parsed is None:
        raise BlobDecryptError(f"blob {storage_key!r} is not encrypted")
    segment, prefix = parsed
    aad = blob[:HEADER_SIZE] + storage_key.encode()
    aead = AESGCM(data_key)
    body = memoryview(blob)[HEADER_SIZE:]
    step = segment + TAG_SIZE
    count = max(1, -(-len(body) // step))
    out = []
    try:
        for index in range(count):
            out.append(
                aead.decrypt(
                    _nonce(prefix, index, index == count - 1), body[index * step : (index + 1) * step], aad
                )
            )
    except InvalidTag as exc:
        raise BlobDecryptError(f"blob {storage_key!r} does not decrypt: tampered with or truncated") from exc
    return b"".join(out)


class _SegmentReader(io.RawIOBase):
    """A stream made one segment at a time by `_fill` (sealing or opening); reads drain its buffer."""

    _buffer: bytearray
    _done: bool

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        raise NotImplementedError

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._buffer and not self._done:
            self._fill()
        n = min(len(view), len(self._buffer))
        view[:n] = self._buffer[:n]
        del self._buffer[:n]
        return n


class _EncryptingReader(_SegmentReader):
    """Reads a plaintext stream and yields the sealed blob, one segment at a time."""

    def __init__(self, source: BinaryIO, *, data_key: bytes, storage_key: str, segment: int) -> None:
        super().__init__()
        self._source = source
        self._segment = segment
        prefix = os.urandom(_NONCE_PREFIX)
        self._prefix = prefix
        header = _HEADER.pack(MAGIC, VERSION, segment, prefix)
        self._aad = header + storage_key.encode()
        self._aead = AESGCM(data_key)
        self._buffer = bytearray(header)
        self._next = _read_exactly(source, segment)
        self._index = 0
        self._done = False
        self.plaintext_bytes = 0

    def _fill(self) -> None:
        current = self._next
        last = len(current) < self._segment
        if not last:
            self._next = _read_exactly(self._source, self._segment)
            last = not self._next
        self._buffer += self._aead.encrypt(_nonce(self._prefix, self._index, last), current, self._aad)
        self.plaintext_bytes += len(current)
        self._index += 1
        self._done = last


class _DecryptingReader(_SegmentReader):
    """Reads a sealed stream (after its header) and yields authenticated plaintext, segment by segment."""

    def __init__(
        self,
        source: BinaryIO,
        *,
        header: bytes,
        data_key: bytes,
        storage_key: str,
        segment: int,
        prefix: bytes,
    ) -> None:
        super().__init__()
        self._source = source
        self._step = segment + TAG_SIZE
        self._prefix = prefix
        self._aad = header + storage_key.encode()
        self._aead = AESGCM(data_key)
        self._key = storage_key
        self._buffer = bytearray()
        self._next = _read_exactly(source, self._step)
        self._index = 0
        self._done = False

    def _fill(self) -> None:
        current = self._next
        last = len(current) < self._step
        if not last:
            self._next = _read_exactly(self._source, self._step)
            last = not self._next
        try:
            self._buffer += self._aead.decrypt(_nonce(self._prefix, self._index, last), current, self._aad)
        except InvalidTag as exc:
            raise BlobDecryptError(
                f"blob {self._key!r} does not decrypt at segment {self._index}: tampered with or truncated"
            ) from exc
        self._index += 1
        self._done = last

    def close(self) -> None:
        if not self.closed:
            self._source.close()
        super().close()


class _PrefixedReader(io.RawIOBase):
    """A stream whose first bytes were already read (a plaintext blob's head), put back in front."""

    def __init__(self, head: bytes, source: BinaryIO) -> None:
        super().__init__()
        self._head = bytearray(head)
        self._source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            del self._head[:n]
            return n
        data = self._source.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._source.close()
        super().close()


# -- the store ---------------------------------------------------------------------------------------


class EncryptedBlobStore:
    """A BlobStore that seals every blob under a data key of its own (see the module docstring).

    put/put_bytes make (or reuse) the storage key's data key, durably, before a byte is written; open and
    get_bytes decrypt; list, exists, delete and delete_many pass through (list reports stored sizes).
    Destroying keys is the caller's business, in the transaction that records the deletion.

    With `allow_plaintext`, a blob stored before encryption was turned on (no header, no key) is still
    read as it is, and logged; a blob without a header whose storage key has a data key is refused (a
    sealed blob replaced by plaintext). `petportrait retention encrypt-existing` seals the old ones.
    """

    def __init__(
        self,
        inner: BlobStore,
        keys: KeyStore,
        kek: bytes,
        *,
        allow_plaintext: bool = True,
        segment_size: int = SEGMENT_SIZE,
        previous_keks: Sequence[bytes] = (),
    ) -> None:
        for each in (kek, *previous_keks):
            if len(each) != KEK_SIZE:
                raise ValueError(f"the key-encryption key must be {KEK_SIZE} bytes, got {len(each)}")
        self.inner = inner
        self.keys = keys
        self._kek = kek
        # New keys are wrapped under `kek`; keys wrapped under a previous KEK (a rotation not yet finished,
        # see retention.kek) still open.
        self._keks = (kek, *previous_keks)
        self.allow_plaintext = allow_plaintext
        self.segment_size = segment_size
        self.name = inner.name

    def __repr__(self) -> str:
        return f"EncryptedBlobStore({self.inner!r})"

    # -- keys --------------------------------------------------------------------------------------

    def data_key_for_write(self, key: str) -> bytes:
        """The storage key's data key, made and stored (durably) if it has none yet."""
        validate_key(key)
        wrapped = self.keys.put_if_absent(key, wrap_key(self._kek, AESGCM.generate_key(256), key))
        return unwrap_with_any(self._keks, wrapped, key)

    def data_key(self, key: str) -> bytes | None:
        """The storage key's data key, or None if it has none (never made, or destroyed)."""
        wrapped = self.keys.get(key)
        return None if wrapped is None else unwrap_with_any(self._keks, wrapped, key)

    # -- writing -----------------------------------------------------------------------------------

    def put(self, key: str, stream: BinaryIO) -> int:
        """Seal the stream under the key's data key and write it; returns the plaintext bytes written."""
        reader = _EncryptingReader(
            stream, data_key=self.data_key_for_write(key), storage_key=key, segment=self.segment_size
        )
        self.inner.put(key, io.BufferedReader(reader, buffer_size=self.segment_size))
        return reader.plaintext_bytes

    def put_bytes(self, key: str, data: bytes) -> int:
        """Seal bytes under the key's data key and write them; returns len(data)."""
        sealed = encrypt(
            data, data_key=self.data_key_for_write(key), storage_key=key, segment=self.segment_size
        )
        self.inner.put_bytes(key, sealed)
        return len(data)

    def put_sealed(self, key: str, stream: BinaryIO) -> int:
        """Write bytes that are already sealed (by this store) as they are (key migration tools)."""
        return self.inner.put(key, stream)

    # -- reading -----------------------------------------------------------------------------------

    def _plaintext_allowed(self, key: str) -> None:
        if self.keys.get(key) is not None:
            raise BlobDecryptError(f"blob {key!r} is stored in plaintext but has a data key: replaced?")
        if not self.allow_plaintext:
            raise PlaintextBlob(f"blob {key!r} is stored in plaintext")
        log.warning("blob %s is stored in plaintext; run `petportrait retention encrypt-existing`", key)

    def open(self, key: str) -> BinaryIO:
        """A readable stream of the decrypted blob, authenticated segment by segment; the caller closes it."""
        source = self.inner.open(key)
        try:
            header = _read_exactly(source, HEADER_SIZE)
            parsed = parse_header(header)
            if parsed is None:
                self._plaintext_allowed(key)
                return io.BufferedReader(_PrefixedReader(header, source))
            data_key = self.data_key(key)
            if data_key is None:
                raise DataKeyMissing(key)
            segment, prefix = parsed
            reader = _DecryptingReader(
                source, header=header, data_key=data_key, storage_key=key, segment=segment, prefix=prefix
            )
        except BaseException:
            source.close()
            raise
        return io.BufferedReader(reader, buffer_size=segment)

    def get_bytes(self, key: str) -> bytes:
        """The whole decrypted blob."""
        blob = self.inner.get_bytes(key)
        if parse_header(blob) is None:
            self._plaintext_allowed(key)
            return blob
        data_key = self.data_key(key)
        if data_key is None:
            raise DataKeyMissing(key)
        return decrypt(blob, data_key=data_key, storage_key=key)

    def exists(self, key: str) -> bool:
        """Whether a blob is stored at key (whether or not it can still be decrypted)."""
        return self.inner.exists(key)

    def size(self, key: str) -> int:
        """The plaintext size of the blob."""
        stored = self.inner.size(key)
        with self.inner.open(key) as source:
            parsed = parse_header(_read_exactly(source, HEADER_SIZE))
        return stored if parsed is None else plaintext_size(stored, parsed[0])

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Every blob under prefix, in key order; sizes are the stored (sealed) sizes."""
        return self.inner.list(prefix)

    def inspect(self, key: str, *, deep: bool = False) -> str | None:
        """What stops the blob from being read: 'plaintext', 'no_key', 'undecryptable', or None if it opens.

        Reads the header and the first segment; with `deep`, decrypts the whole blob.
        """
        try:
            with self.inner.open(key) as source:
                header = _read_exactly(source, HEADER_SIZE)
                parsed = parse_header(header)
                if parsed is None:
                    return "plaintext"
                data_key = self.data_key(key)
                if data_key is None:
                    return "no_key"
                segment, prefix = parsed
                reader = _DecryptingReader(
                    source, header=header, data_key=data_key, storage_key=key, segment=segment, prefix=prefix
                )
                reader.read(1)
                if deep:
                    while reader.read(1024 * 1024):
                        pass
        except BlobNotFound:
            raise
        except BlobDecryptError:
            return "undecryptable"
        return None

    # -- deleting and health -----------------------------------------------------------------------

    def delete(self, key: str) -> bool:
        """Delete the stored blob (its data key is destroyed by whoever records the deletion)."""
        return self.inner.delete(key)

    def delete_many(self, keys: Sequence[str]) -> dict[str, str]:
        """Delete every key at once where the inner store can (BulkDelete), else one at a time."""
        if isinstance(self.inner, BulkDelete):
            return self.inner.delete_many(keys)
        failures: dict[str, str] = {}
        for key in keys:
            try:
                self.inner.delete(key)
            except Exception as exc:
                failures[key] = f"{type(exc).__name__}: {exc}"
        return failures

    def check(self) -> None:
        """The inner store's check."""
        self.inner.check()
