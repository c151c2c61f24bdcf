"""Streaming helpers shared by the API and the pages."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import BinaryIO

from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from petportrait.settings import Settings
from petportrait.storage.base import BlobStore


def iter_chunks(stream: BinaryIO, size: int = 64 * 1024) -> Iterator[bytes]:
    """Yield the stream in chunks and close it at the end (or when the client goes away)."""
    try:
        while chunk := stream.read(size):
            yield chunk
    finally:
        stream.close()


def export_zip_response(
    session: Session, blobs: BlobStore, *, user_id: str, settings: Settings
) -> StreamingResponse:
    """Everything held about a person as one ZIP; the photo reads are on record before a byte leaves."""
    from petportrait.lifecycle import export

    spool = tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024)  # noqa: SIM115 - closed by the stream
    summary = export.build_export(session, blobs, user_id=user_id, out=spool, settings=settings)
    session.commit()
    size = spool.tell()
    spool.seek(0)
    stamp = summary.exported_at.strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        iter_chunks(spool, 1024 * 1024),  # type: ignore[arg-type]
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="petportrait-export-{stamp}.zip"',
            "Content-Length": str(size),
            "Cache-Control": "private, no-store",
        },
    )
