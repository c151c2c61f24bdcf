"""Paging of every list: `?limit=` (default 50, at most 100) and an opaque `?cursor=`, answering
`{"items": [...], "next_cursor": "..." | null}`.

The cursor is keyset paging on (a timestamp, an id): base64url of the last item's key, so a page never
skips or repeats an item when rows are added meanwhile. Knows no domain and no web framework (the
query parameters are `petportrait.http.PageQuery`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute, Session

from petportrait.errors import InvalidInput

DEFAULT_LIMIT = 50
MAX_LIMIT = 100

T = TypeVar("T")
Key = tuple[datetime, str]


class Page(BaseModel, Generic[T]):
    """One page of a list; `next_cursor` is null on the last page."""

    items: list[T]
    next_cursor: str | None = None


@dataclass(frozen=True)
class PageParams:
    """What the client asked: how many items, and after which one."""

    limit: int = DEFAULT_LIMIT
    after: Key | None = None


def encode_cursor(key: Key) -> str:
    """The opaque cursor of an item's key."""
    raw = json.dumps([key[0].isoformat(), key[1]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Key:
    """The key in a cursor; 422 `invalid_cursor` for anything this service did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, item_id = json.loads(raw)
        when = datetime.fromisoformat(stamp)
        if when.tzinfo is None or not isinstance(item_id, str) or len(item_id) > 64:
            raise ValueError
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput(
            "The cursor is not one this service gave; use the `next_cursor` of the previous page.",
            code="invalid_cursor",
        ) from None
    return when, item_id


def page_query(
    session: Session,
    query: Select[T],
    *,
    stamp: InstrumentedAttribute[Any],
    ident: InstrumentedAttribute[Any],
    page: PageParams,
    descending: bool = True,
) -> tuple[list[T], str | None]:
    """One page of a select, ordered by (stamp, ident), newest first unless `descending` is False."""
    if page.after is not None:
        at, item_id = page.after
        if descending:
            query = query.where(or_(stamp < at, and_(stamp == at, ident < item_id)))
        else:
            query = query.where(or_(stamp > at, and_(stamp == at, ident > item_id)))
    order = (stamp.desc(), ident.desc()) if descending else (stamp.asc(), ident.asc())
    rows = list(session.scalars(query.order_by(None).order_by(*order).limit(page.limit + 1)))
    if len(rows) <= page.limit:
        return rows, None
    last = rows[page.limit - 1]
    return rows[: page.limit], encode_cursor((getattr(last, stamp.key), getattr(last, ident.key)))


def page_list(
    items: Sequence[T], *, key: Callable[[T], Key], page: PageParams, descending: bool = True
) -> tuple[list[T], str | None]:
    """One page of a list already in memory (a short one, e.g. a staff queue), by the same cursor rules."""
    ordered = sorted(items, key=key, reverse=descending)
    if page.after is not None:
        after = page.after
        ordered = [i for i in ordered if (key(i) < after if descending else key(i) > after)]
    if len(ordered) <= page.limit:
        return ordered, None
    return ordered[: page.limit], encode_cursor(key(ordered[page.limit - 1]))
