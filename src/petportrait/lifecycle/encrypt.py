"""`petportrait retention encrypt-existing`: seal the blobs stored before encryption was turned on.

Walks the store; each blob without the sealed header is read, sealed under a data key of its own and
written back under the same key (atomically, as every put). On a versioned S3 bucket the plaintext
versions left behind are deleted. Blobs already sealed are skipped, so the command is idempotent and can
be stopped and run again at any point. A blob whose item was deleted while it was being sealed is deleted
again at once, with its key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from petportrait.db import session_scope
from petportrait.retention.keys import destroy_keys
from petportrait.retention.models import Tombstone
from petportrait.storage.base import BlobNotFound
from petportrait.storage.crypto import HEADER_SIZE, EncryptedBlobStore, is_encrypted

log = logging.getLogger(__name__)


@dataclass
class EncryptReport:
    """What one run did."""

    scanned: int = 0
    encrypted: int = 0
    already: int = 0
    vanished: int = 0
    errors: dict[str, str] = field(default_factory=dict)


def encrypt_existing(
    blobs: EncryptedBlobStore,
    session_factory: sessionmaker[Session],
    *,
    prefix: str = "",
    progress: Callable[[EncryptReport], None] | None = None,
) -> EncryptReport:
    """Seal every plaintext blob under `prefix`; see the module docstring."""
    report = EncryptReport()
    inner = blobs.inner
    for info in inner.list(prefix):
        report.scanned += 1
        key = info.key
        try:
            with inner.open(key) as source:
                head = source.read(HEADER_SIZE)
            if is_encrypted(head):
                report.already += 1
                continue
            with inner.open(key) as source:
                blobs.put(key, source)
            delete_versions = getattr(inner, "delete_versions", None)
            if delete_versions is not None and getattr(inner, "versioning", lambda: "")():
                delete_versions(key, keep_current=True)  # the plaintext versions
            report.encrypted += 1
        except BlobNotFound:
            report.vanished += 1  # deleted since it was listed
            continue
        except Exception as exc:
            log.exception("could not encrypt %s", key)
            report.errors[key] = f"{type(exc).__name__}: {exc}"
            continue
        with session_scope(session_factory) as session:
            if session.scalar(select(Tombstone.id).where(Tombstone.storage_key == key).limit(1)):
                destroy_keys(session, [key])  # deleted while we sealed it: no resurrection
                inner.delete(key)
        if progress is not None and report.scanned % 1000 == 0:
            progress(report)
    return report
