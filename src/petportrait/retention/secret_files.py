"""Development secrets kept in the data folder: 32 random bytes, base64, made once (mode 0600).

Outside production, a key that the settings do not give (the key-encryption key, the transparency log's
signing key) is made on first use in `data_dir/keys/`; two processes starting at once make one key.
"""

from __future__ import annotations

import base64
import fcntl
import os
from pathlib import Path

from petportrait.files import private_dir, private_file


def read_or_make(path: Path) -> str:
    """The base64 secret in `path`, made (32 random bytes, 0600, written atomically) if there is none."""
    with private_file(private_dir(path.parent) / f".{path.stem}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(base64.b64encode(os.urandom(32)).decode() + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        return path.read_text()
