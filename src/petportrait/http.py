"""FastAPI dependencies every domain's views use: the services, a database session, settings, blobs.

The signed-in person comes from `petportrait.accounts.deps`. Both sit below the domains, so a domain's
`views.py` (its HTTP edge) imports them without reaching up into the web layer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, BinaryIO

from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session

from petportrait.db import session_scope
from petportrait.paging import DEFAULT_LIMIT, MAX_LIMIT, PageParams, decode_cursor
from petportrait.registry import Services
from petportrait.settings import Settings
from petportrait.storage.base import BlobStore


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_session(services: ServicesDep) -> Iterator[Session]:
    """A session per request, committed when the handler returns without error."""
    with session_scope(services.session_factory) as session:
        yield session


# scope="function": the commit happens when the handler returns, before the response is sent, so a client's
# next request always sees what the previous answer reported.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_settings_dep(services: ServicesDep) -> Settings:
    return services.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def get_blobs(services: ServicesDep) -> BlobStore:
    return services.blobs


BlobsDep = Annotated[BlobStore, Depends(get_blobs)]


def bearer_value(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None when there is no such header."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def iter_chunks(stream: BinaryIO, size: int = 64 * 1024) -> Iterator[bytes]:
    """Yield the stream in chunks and close it at the end (or when the client goes away)."""
    try:
        while chunk := stream.read(size):
            yield chunk
    finally:
        stream.close()


def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None, Query(max_length=200, description="the `next_cursor` of the previous page")
    ] = None,
) -> PageParams:
    """The paging query parameters of a list endpoint."""
    return PageParams(limit=limit, after=decode_cursor(cursor) if cursor else None)


PageQuery = Annotated[PageParams, Depends(page_params)]
