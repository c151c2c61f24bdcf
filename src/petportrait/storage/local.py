"""LocalBlobStore: blobs as files in one folder, written atomically.

A key maps to the path of the same name under the root ("photos/a/b.jpg" is root/photos/a/b.jpg).
Writes go to a temporary file in the target's folder, are fsynced, then renamed over the target with
os.replace, so a reader sees the old blob or the new one, never a part. Temporary files carry a '~' in
their name, which no valid key can, so they are never listed and never collide with a blob.

Because keys are files and folders, one key cannot also be the folder of another ("a" and "a/b");
such a put raises KeyConflict. Keys are checked twice: by validate_key, and by resolving the path and
refusing anything that lands outside the root (a symlink planted inside the root, say).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, TypeVar

from petportrait.files import private_dir
from petportrait.storage.base import (
    BlobError,
    BlobInfo,
    BlobNotFound,
    InvalidKey,
    validate_key,
    validate_prefix,
)

CHUNK_SIZE = 1024 * 1024
_TEMP_PREFIX = ".~put-"
_PROBE_PREFIX = ".~probe-"
_DELETE_THREADS = 8  # unlink and rmdir are syscalls that wait on the disk, not on the GIL
_PROBE = 64  # a bulk delete times this many calls before it decides whether threads help
_PROBE_MIN_CALLS = 8  # ... of which at least this many must have done something to count
_SLOW_CALL_SECONDS = 60e-6  # a call slower than this (median) waits on a device: threads help
_T = TypeVar("_T")


class KeyConflict(BlobError):
    """The key is the folder of other keys, or one of its folders is a blob (local store only)."""


class LocalBlobStore:
    """A BlobStore in a local folder; see the module docstring for the layout and guarantees."""

    name = "local"

    def __init__(self, root: Path) -> None:
        root = Path(root)
        private_dir(root)
        self.root = root.resolve()
        self._call_seconds: dict[str, float] = {}  # how long an unlink or rmdir takes here (delete_many)

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    # -- paths -------------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        """The file of a key, after checking that neither the key nor its resolved path escapes the root."""
        validate_key(key)
        path = self.root.joinpath(*key.split("/"))
        resolved = Path(os.path.realpath(path))
        if resolved != path or not resolved.is_relative_to(self.root):
            # realpath differs from the plain join only when a symlink is on the way.
            raise InvalidKey(f"blob key {key!r} resolves outside the store or through a link")
        return path

    # -- writing -----------------------------------------------------------------------------------

    def put(self, key: str, stream: BinaryIO) -> int:
        """Write the whole stream to key, atomically; returns the number of bytes written."""
        path = self._path(key)
        fd, tmp_name = self._temp_file(path)
        tmp = Path(tmp_name)
        written = 0
        try:
            with os.fdopen(fd, "wb") as out:
                while True:
                    chunk = stream.read(CHUNK_SIZE)
                    if not chunk:
                        break
                    out.write(chunk)
                    written += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.replace(tmp, path)
            except (IsADirectoryError, NotADirectoryError) as exc:
                raise KeyConflict(f"blob key {key!r} is a folder of other blobs") from exc
            except OSError as exc:
                if exc.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
                    raise KeyConflict(f"blob key {key!r} is a folder of other blobs") from exc
                raise
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        _fsync_dir(path.parent)
        return written

    def put_bytes(self, key: str, data: bytes) -> int:
        """Write bytes to key, atomically."""
        return self.put(key, io.BytesIO(data))

    def _temp_file(self, path: Path) -> tuple[int, str]:
        """Create the temporary file next to path, making its folders (retrying if a delete races us)."""
        for _ in range(5):
            try:
                private_dir(path.parent)
            except (FileExistsError, NotADirectoryError) as exc:
                raise KeyConflict(f"a folder of blob key {path} is itself a blob") from exc
            try:
                return tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=".tmp", dir=path.parent)
            except FileNotFoundError:
                continue  # a concurrent delete removed the empty folder between mkdir and mkstemp
        raise BlobError(f"could not create a temporary file in {path.parent}")

    # -- reading -----------------------------------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        """A readable binary stream of the blob; the caller closes it."""
        path = self._path(key)
        try:
            return path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise BlobNotFound(key) from exc

    def get_bytes(self, key: str) -> bytes:
        """The whole blob."""
        with self.open(key) as stream:
            return stream.read()

    def exists(self, key: str) -> bool:
        """Whether a blob exists at key."""
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        """The size of the blob in bytes."""
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise BlobNotFound(key) from exc
        if not path.is_file():
            raise BlobNotFound(key)
        return st.st_size

    # -- deleting ----------------------------------------------------------------------------------

    def delete(self, key: str) -> bool:
        """Remove the blob; returns whether there was one. Empty folders left behind are removed."""
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return False
        except (IsADirectoryError, PermissionError):
            if path.is_dir():
                return False  # a folder of other keys is not a blob
            raise
        _fsync_dir(path.parent)
        self._prune_empty_folders(path.parent)
        return True

    def delete_many(self, keys: Sequence[str], *, threads: int = _DELETE_THREADS) -> dict[str, str]:
        """Delete every key; returns {key: error} for those that could not be deleted (see BulkDelete).

        Files are unlinked, then the folders left empty pruned, deepest first; each step runs from
        `threads` threads when its first calls show that they wait on a disk (see `_adaptively`). Keys
        are checked as ``delete`` checks them: a valid key whose folders are real folders inside the
        root (no symlinked folder on the way; unlink itself never follows a link). Each folder is looked
        at once (one lstat; its parent's answer is reused), not resolved from the root again.
        Unlike ``delete``, folders are not fsynced one by one: a deletion that a power loss undoes brings
        back a blob whose key a tombstone names, which the sweeper's reconciliation deletes at once (or
        leaves a row still due, which the next sweep deletes again).
        """
        if not keys:
            return {}
        failures: dict[str, str] = {}
        root = str(self.root)
        checked: dict[str, bool] = {root: True}  # the root was resolved when the store was made

        def folder_ok(folder: str) -> bool:
            """Whether folder is a real folder (or none) under the root, reached through real folders."""
            ok = checked.get(folder)
            if ok is None:
                parent = os.path.dirname(folder)
                if parent == folder or not folder.startswith(root + os.sep) or not folder_ok(parent):
                    ok = False
                else:
                    try:
                        ok = stat.S_ISDIR(os.lstat(folder).st_mode)
                    except (FileNotFoundError, NotADirectoryError):
                        ok = True  # nothing there: the unlink finds nothing either
                checked[folder] = ok
            return ok

        def unlink(chunk: Sequence[str], timings: list[float] | None) -> set[str]:
            touched: set[str] = set()
            for key in chunk:
                try:
                    validate_key(key)
                    path = os.path.join(root, *key.split("/"))
                    folder = os.path.dirname(path)
                    if not folder_ok(folder):
                        raise InvalidKey(f"blob key {key!r} resolves outside the store or through a link")
                    started = time.perf_counter()
                    os.unlink(path)
                    if timings is not None:
                        timings.append(time.perf_counter() - started)
                except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                    continue  # gone already, or a folder of other keys (not a blob)
                except Exception as exc:
                    failures[key] = f"{type(exc).__name__}: {exc}"
                    continue
                touched.add(folder)
            return touched

        def prune(chunk: Sequence[str], timings: list[float] | None) -> None:
            for folder in chunk:
                while folder != root and folder.startswith(root + os.sep):
                    started = time.perf_counter()
                    try:
                        os.rmdir(folder)
                    except OSError:
                        break  # not empty (or gone already): stop here
                    if timings is not None:
                        timings.append(time.perf_counter() - started)
                    folder = os.path.dirname(folder)

        folders: set[str] = set()
        for touched in self._adaptively("unlink", sorted(keys), unlink, threads):
            folders |= touched
        deepest_first = sorted(folders, key=lambda f: f.count(os.sep), reverse=True)
        self._adaptively("rmdir", deepest_first, prune, threads)
        return failures

    def _adaptively(
        self,
        call: str,
        items: Sequence[str],
        work: Callable[[Sequence[str], list[float] | None], _T],
        threads: int,
    ) -> list[_T]:
        """`work` over slices of items, from `threads` threads only where `call` waits on a disk.

        Where the folder lives in memory (tmpfs, or a disk's cache) each call takes microseconds and
        threads would only fight for the GIL; on a disk that frees blocks as it goes (ext4 with
        ``discard``, network storage) a call waits hundreds of microseconds and threads overlap those
        waits. The first `_PROBE` items run here and time each call that did something; the store keeps
        the quickest median it has seen (waiting for the GIL only ever makes a call look slower) and
        uses threads for the rest when that median is over `_SLOW_CALL_SECONDS`.
        """
        timings: list[float] = []
        done = [work(items[:_PROBE], timings)]
        if len(timings) >= _PROBE_MIN_CALLS:
            seen = statistics.median(timings)
            self._call_seconds[call] = min(seen, self._call_seconds.get(call, seen))
        rest = items[_PROBE:]
        if not rest:
            return done
        if threads <= 1 or self._call_seconds.get(call, 0.0) <= _SLOW_CALL_SECONDS:
            return [*done, work(rest, None)]
        with ThreadPoolExecutor(threads) as pool:
            return [*done, *pool.map(lambda part: work(part, None), _slices(rest, threads))]

    def _prune_empty_folders(self, folder: Path) -> None:
        while folder != self.root and folder.is_relative_to(self.root):
            try:
                folder.rmdir()
            except OSError:
                return  # not empty (or already gone, or in use): stop here
            folder = folder.parent

    # -- listing -----------------------------------------------------------------------------------

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Every blob whose key starts with prefix, in key order."""
        validate_prefix(prefix)
        # Start at the deepest folder that the prefix names completely.
        folder_key = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        if folder_key:
            start = self._path(folder_key)
            if not start.is_dir():
                return
        else:
            start = self.root
        yield from self._walk(start, folder_key + "/" if folder_key else "", prefix)

    def _walk(self, folder: Path, key_base: str, prefix: str) -> Iterator[BlobInfo]:
        """Walk one folder in key order: a folder 'd' sorts as 'd/', so its keys come where they belong."""
        try:
            with os.scandir(folder) as it:
                entries = []
                for entry in it:
                    try:
                        validate_key(entry.name)  # skips temporary files and anything foreign
                    except InvalidKey:
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        entries.append((entry.name + "/", entry))
                    elif entry.is_file(follow_symlinks=False):
                        entries.append((entry.name, entry))
        except (FileNotFoundError, NotADirectoryError):
            return
        entries.sort(key=lambda pair: pair[0].encode())
        for sort_name, entry in entries:
            key = key_base + sort_name
            if sort_name.endswith("/"):
                if key.startswith(prefix) or prefix.startswith(key):
                    yield from self._walk(Path(entry.path), key, prefix)
                continue
            if not key.startswith(prefix):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # deleted while we were listing
            yield BlobInfo(key=key, size=st.st_size, modified_at=datetime.fromtimestamp(st.st_mtime, tz=UTC))

    # -- health ------------------------------------------------------------------------------------

    def check(self) -> None:
        """Write, fsync and remove a probe file in the root; raises OSError if the folder is not writable."""
        fd, name = tempfile.mkstemp(prefix=_PROBE_PREFIX, suffix=".tmp", dir=self.root)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(b"petportrait blob store probe\n")
                out.flush()
                os.fsync(out.fileno())
        finally:
            os.unlink(name)


def _slices(items: Sequence[str], count: int) -> list[Sequence[str]]:
    """``items`` in at most ``count`` contiguous slices of nearly equal length."""
    step = max(1, -(-len(items) // count))
    return [items[i : i + step] for i in range(0, len(items), step)]


def _fsync_dir(folder: Path) -> None:
    """Make a rename or unlink in folder durable (best effort where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
