"""Files and folders in the data folder: readable by the service's user only (0700/0600), whatever the umask.

Whatever the service makes there can hold personal data (the SQLite database and its -wal/-shm files,
blobs, outbox .eml files, keys, the queue), so each is made owner-only where it is made, never left to
the process's umask. Temporary files made with `tempfile.mkstemp` are 0600 already.
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_dir(path: Path) -> Path:
    """Make `path` and every missing folder above it with mode 0700 (existing ones are left as they are)."""
    try:
        path.mkdir(mode=DIR_MODE, exist_ok=True)
    except FileNotFoundError:
        private_dir(path.parent)
        path.mkdir(mode=DIR_MODE, exist_ok=True)
    return path


def private_file(path: Path) -> Path:
    """Make `path` (empty) with mode 0600 if it does not exist; an existing one is set to 0600."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return path


def private_sqlite_file(path: Path) -> Path:
    """A SQLite database file made 0600 before SQLite opens it (SQLite gives its -wal and -shm files the
    database file's mode); side files left by an earlier version are set to 0600 too."""
    private_file(path)
    for suffix in SQLITE_SIDE_FILES:
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.chmod(FILE_MODE)
    return path


def private_tree(root: Path) -> None:
    """Set every folder under `root` (itself included) to 0700 and every file to 0600."""
    root.chmod(DIR_MODE)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            Path(folder, name).chmod(DIR_MODE)
        for name in files:
            Path(folder, name).chmod(FILE_MODE)
