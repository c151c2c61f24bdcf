"""Multipart bodies with a per-file size limit applied while the body streams in.

Starlette's parser bounds only the non-file parts (`max_part_size`); a file part is spooled whole. Here a
file part keeps at most `max_file_bytes + 1` bytes (one more than the limit, so that the file is seen to
be too large and refused by name without being decoded); the rest of it is dropped as it arrives, so an
oversize file costs neither memory, disk nor decoding. The request body as a whole stays bounded by the
BodySizeLimit middleware.

Use `CappedUploadRoute` as the `route_class` of a router whose endpoints take uploads.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from contextlib import aclosing
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

DEFAULT_MAX_FILE_BYTES = 20 * 1024 * 1024


class CappedMultiPartParser(MultiPartParser):
    """Starlette's multipart parser, keeping at most `max_file_bytes + 1` bytes of each file part."""

    def __init__(self, *args: Any, max_file_bytes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_file_bytes = max_file_bytes
        self._file_bytes = 0

    def on_part_begin(self) -> None:
        super().on_part_begin()
        self._file_bytes = 0

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current_part.file is None:
            super().on_part_data(data, start, end)
            return
        room = self.max_file_bytes + 1 - self._file_bytes
        if room <= 0:
            return  # already over the limit: the rest of this file is dropped as it streams in
        take = min(end - start, room)
        self._file_bytes += take
        super().on_part_data(data, start, start + take)


class CappedFormRequest(Request):
    """A request whose multipart form caps each file at the app's `security.max_upload_bytes`."""

    async def _get_form(
        self,
        *,
        max_files: int | float = 1000,
        max_fields: int | float = 1000,
        max_part_size: int = 1024 * 1024,
    ) -> FormData:
        content_type, _ = parse_options_header(self.headers.get("Content-Type"))
        if self._form is None and content_type == b"multipart/form-data":
            try:
                async with aclosing(self.stream()) as stream:
                    parser = CappedMultiPartParser(
                        self.headers,
                        stream,
                        max_files=max_files,
                        max_fields=max_fields,
                        max_part_size=max_part_size,
                        max_file_bytes=max_file_bytes(self),
                    )
                    self._form = await parser.parse()
            except MultiPartException as exc:
                if "app" in self.scope:
                    raise HTTPException(status_code=400, detail=exc.message) from exc
                raise
        return await super()._get_form(
            max_files=max_files, max_fields=max_fields, max_part_size=max_part_size
        )


def max_file_bytes(request: Request) -> int:
    """The per-file limit of the running app (its settings), else the default."""
    services = getattr(request.app.state, "services", None)
    settings = getattr(services, "settings", None)
    if settings is None:
        return DEFAULT_MAX_FILE_BYTES
    return int(settings.security.max_upload_bytes)


class CappedUploadRoute(APIRoute):
    """A route whose multipart files are cut at the size limit while they stream in."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def capped(request: Request) -> Response:
            return await handler(CappedFormRequest(request.scope, request.receive))

        return capped
