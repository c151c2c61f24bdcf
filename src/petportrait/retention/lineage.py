"""Lineage: a copy ends with its source.

A store that keeps copies naming photos, models, renders or pets (stored idempotent answers, outbox
messages, webhook deliveries) links each row to the ids it names when it writes it (`link`). When an item
or a pet is deleted, the lifecycle aggregate calls every store's `ends_with_subjects` (declared in the data
inventory) with the deleted ids; the store asks `rows_naming` which of its rows name them, deletes those
rows and their files, and `forget`s their links, all in the transaction that deleted the item.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from petportrait.retention.models import LineageLink

_ID = re.compile(r"^[0-9a-f]{32}$")
_CHUNK = 500


def ids_in(value: Any) -> Iterator[str]:
    """Every id (32 hex digits) in a JSON-like value: strings, and those inside dicts and lists."""
    if isinstance(value, str):
        if _ID.match(value):
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from ids_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from ids_in(item)


def link(session: Session, *, store: str, row_id: str, subjects: Iterable[str]) -> None:
    """Record that a row of `store` names these ids (adding to what it named before)."""
    known = set(
        session.scalars(
            select(LineageLink.subject_id).where(LineageLink.store == store, LineageLink.row_id == row_id)
        )
    )
    new = sorted(set(subjects) - known)
    if new:
        session.execute(
            insert(LineageLink), [{"store": store, "row_id": row_id, "subject_id": s} for s in new]
        )


def rows_naming(session: Session, *, store: str, subjects: Sequence[str]) -> list[str]:
    """The rows of `store` that name any of these ids."""
    found: set[str] = set()
    for start in range(0, len(subjects), _CHUNK):
        chunk = list(subjects[start : start + _CHUNK])
        found.update(
            session.scalars(
                select(LineageLink.row_id).where(
                    LineageLink.store == store, LineageLink.subject_id.in_(chunk)
                )
            )
        )
    return sorted(found)


def forget(session: Session, *, store: str, row_ids: Sequence[str]) -> None:
    """Drop the links of rows that are deleted."""
    for start in range(0, len(row_ids), _CHUNK):
        session.execute(
            delete(LineageLink)
            .where(LineageLink.store == store, LineageLink.row_id.in_(list(row_ids[start : start + _CHUNK])))
            .execution_options(synchronize_session=False)
        )
