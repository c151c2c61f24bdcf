"""Idempotency keys: a creating request sent twice with the same key creates once.

A client sends `Idempotency-Key: <up to 255 printable characters>` with a POST. The first request claims
the key (one row, unique per scope and key, so two processes racing for it cannot both win); when it
answers, the answer (status, a few headers, body) is stored with the row. The same key with the same
request within 24 hours gets that answer again; with a different request, 422 `idempotency_key_reused`;
while the first is still being answered, 409 `idempotency_key_in_flight`.

The scope is the account (`user:<id>`) for a signed-in request. A request without credentials is scoped
by the key and the request's own fingerprint: only someone who sends the very same body gets its answer.

What is kept, and for how long (the data inventory's entry for this store):
- fingerprints are HMAC-SHA256 under a key derived from the secret key, never a bare hash of a body (a
  body may hold a password);
- routes that carry credentials (sign-up, sign-in, password changes and resets) keep no row at all (the
  web edge passes them through);
- an answer is kept only when it is JSON; an answer that carries a secret shown once (`Cache-Control:
  no-store`: a new API token, a webhook secret) keeps its status and Location but not its body, and a
  replay says the first answer is gone; an answer that carries file bytes (an export, an image) is not
  kept: the key is given back and a retry makes it again;
- a kept answer lives 24 hours, goes with its account at erasure, and ends with every item or pet it
  names (`subjects`): deleting a photo, model, render or pet deletes the stored answers that name it.

This module holds the table and the rules; `petportrait.web.idempotency` is the HTTP edge.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Boolean,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    delete,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from petportrait.clock import utcnow
from petportrait.db import Base, IdMixin, session_scope
from petportrait.jobs.dbclock import coordination_now
from petportrait.retention import lineage

if TYPE_CHECKING:
    from petportrait.registry import Registry, Services
    from petportrait.settings import Settings

TTL = timedelta(hours=24)
"""How long a key answers the same again; rows older than this are swept."""

IN_FLIGHT_TIMEOUT = timedelta(seconds=10)
"""A claim is a lease: the process answering the request renews it every `RENEW_EVERY` while it runs, so a
claim whose process died (or lost the database) is given up within this long, not minutes later."""
RENEW_EVERY = IN_FLIGHT_TIMEOUT / 4

STORE = "idempotency_keys"
"""This store's name in the data inventory and in lineage links."""

CREDENTIAL_PATHS = re.compile(r"^/api/v1/(accounts/?$|auth/|me/password|.*(password|verif))")
"""Routes whose requests carry credentials: no row is ever kept for them."""

MAX_KEY_LENGTH = 255
SWEEP_INTERVAL_SECONDS = 3600.0

IN_FLIGHT = "in_flight"
DONE = "done"


class IdempotencyRecord(Base, IdMixin):
    """One key of one scope: the request's fingerprint and, once answered, the answer."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("scope", "key", name="uq_idempotency_keys_scope_key"),)

    scope: Mapped[str] = mapped_column(String(80))
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH))
    owner_id: Mapped[str | None] = mapped_column(String(32), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(1024))
    state: Mapped[str] = mapped_column(String(16))
    status: Mapped[int | None] = mapped_column(Integer)
    headers: Mapped[list[Any] | None] = mapped_column(JSON)
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    # False when the answer carried a secret shown once: the status is kept, the body is not.
    answer_kept: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    locked_until: Mapped[datetime | None]
    expires_at: Mapped[datetime] = mapped_column(index=True)


@dataclass(frozen=True)
class Claimed:
    """This request holds the key: answer it, then `complete` or `release`."""

    record_id: str


@dataclass(frozen=True)
class Replay:
    """The key was answered before, for the same request: send this again."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class NotKept:
    """The key was answered before, for the same request, with a secret shown once: not kept."""

    status: int
    headers: list[tuple[str, str]]


@dataclass(frozen=True)
class InFlight:
    """Another request with this key is being answered now."""

    retry_after_seconds: int


@dataclass(frozen=True)
class Reused:
    """The key was used for a different request."""

    method: str
    path: str


Outcome = Claimed | Replay | NotKept | InFlight | Reused


def scope_for(owner_id: str | None, fingerprint: str) -> str:
    """`user:<id>` for a signed-in request; else bound to the request itself."""
    return f"user:{owner_id}" if owner_id else f"anon:{fingerprint}"


def claim(
    session: Session,
    *,
    scope: str,
    key: str,
    fingerprint: str,
    method: str,
    path: str,
    owner_id: str | None,
    now: datetime | None = None,
) -> Outcome:
    """Claim the key for this request, or say why not (answered before, in flight, or used otherwise).

    Commits: the claim must be visible to every other process before the request runs. Lock times are
    the database's clock: the processes that claim and renew keys may disagree on the time.
    """
    now = now or coordination_now(session)
    for _ in range(3):
        record = IdempotencyRecord(
            scope=scope,
            key=key,
            owner_id=owner_id,
            fingerprint=fingerprint,
            method=method,
            path=path,
            state=IN_FLIGHT,
            created_at=now,
            locked_until=now + IN_FLIGHT_TIMEOUT,
            expires_at=now + TTL,
        )
        session.add(record)
        try:
            session.commit()
            return Claimed(record_id=record.id)
        except IntegrityError:
            session.rollback()
        existing = session.scalar(
            select(IdempotencyRecord).where(IdempotencyRecord.scope == scope, IdempotencyRecord.key == key)
        )
        if existing is None:
            continue  # released or swept meanwhile: try again
        locked_until = existing.locked_until
        stale = existing.state == IN_FLIGHT and locked_until is not None and locked_until <= now
        if existing.expires_at <= now or stale:
            # An answer older than 24 hours, or a claim whose process died: the key is free again.
            # Deleting by id and version of the row lets one of several racing requests win.
            session.execute(
                delete(IdempotencyRecord).where(
                    IdempotencyRecord.id == existing.id, IdempotencyRecord.state == existing.state
                )
            )
            session.commit()
            continue
        session.commit()
        if existing.fingerprint != fingerprint:
            return Reused(method=existing.method, path=existing.path)
        if existing.state == IN_FLIGHT:
            return InFlight(retry_after_seconds=1)
        headers = [(str(name), str(value)) for name, value in existing.headers or []]
        if not existing.answer_kept:
            return NotKept(status=existing.status or 200, headers=headers)
        return Replay(status=existing.status or 200, headers=headers, body=existing.body or b"")
    return InFlight(retry_after_seconds=1)


def subjects_of(path: str, body: bytes | None) -> set[str]:
    """The ids a request's path and its JSON answer name (what the stored answer must end with)."""
    found = set(lineage.ids_in(path.split("/")))
    if body:
        with contextlib.suppress(ValueError):  # not JSON: only the path names ids
            found.update(lineage.ids_in(json.loads(body)))
    return found


def renew(session: Session, *, record_id: str) -> bool:
    """Extend a claim's lease (the request is still being answered); False if it is no longer held."""
    now = coordination_now(session)
    result = session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.id == record_id, IdempotencyRecord.state == IN_FLIGHT)
        .values(locked_until=now + IN_FLIGHT_TIMEOUT)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return bool(getattr(result, "rowcount", 0))


def complete(
    session: Session,
    *,
    record_id: str,
    status: int,
    headers: list[tuple[str, str]],
    body: bytes | None,
) -> None:
    """Store the answer of a claimed key (`body=None`: the answer carried a secret; keep only its status
    and headers). Commits."""
    record = session.get(IdempotencyRecord, record_id)
    if record is None:  # swept or erased while the request ran: nothing to keep
        return
    record.state = DONE
    record.status = status
    record.headers = [[name, value] for name, value in headers]
    record.body = body
    record.answer_kept = body is not None
    record.locked_until = None
    lineage.link(session, store=STORE, row_id=record.id, subjects=subjects_of(record.path, body))
    session.commit()


def release(session: Session, *, record_id: str) -> None:
    """Give a claimed key back without an answer (the request failed): a retry runs again. Commits."""
    session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id))
    session.commit()


def _delete_records(session: Session, condition: Any) -> int:
    ids = list(session.scalars(select(IdempotencyRecord.id).where(condition)))
    lineage.forget(session, store=STORE, row_ids=ids)
    for start in range(0, len(ids), 500):
        session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id.in_(ids[start : start + 500])))
    return len(ids)


def sweep_idempotency(session: Session, now: datetime | None = None) -> int:
    """Delete the keys older than 24 hours; returns how many. The caller commits."""
    now = now or utcnow()
    return _delete_records(session, IdempotencyRecord.expires_at <= now)


def erase_owner(session: Session, user_id: str, actor_id: str | None = None) -> None:
    """Erasure hook: an erased account's stored answers go with it."""
    _delete_records(session, IdempotencyRecord.owner_id == user_id)


def end_with(session: Session, subject_ids: Sequence[str]) -> int:
    """Delete the stored answers that name any of these ids (their item or pet was deleted)."""
    named = lineage.rows_naming(session, store=STORE, subjects=subject_ids)
    return sum(
        _delete_records(session, IdempotencyRecord.id.in_(named[start : start + 500]))
        for start in range(0, len(named), 500)
    )


def run_sweep(services: Services) -> int:
    """The periodic task: one sweep in its own transaction."""
    with session_scope(services.session_factory) as session:
        return sweep_idempotency(session, utcnow())


def residues(session: Session, settings: Settings) -> list[tuple[str, str]]:
    """What this store's rules forbid: an answer of a route that carries credentials, a non-JSON answer."""
    _ = settings
    out = []
    for row_id, path, body in session.execute(
        select(IdempotencyRecord.id, IdempotencyRecord.path, IdempotencyRecord.body)
    ):
        if CREDENTIAL_PATHS.match(path):
            out.append(("kept_credentials", f"row {row_id} keeps an answer of {path}"))
        elif body:
            try:
                json.loads(body)
            except ValueError:
                out.append(("kept_content", f"row {row_id} keeps an answer that is not JSON"))
    return out


def register(registry: Registry) -> None:
    """What idempotency contributes: its table's retention rule, an erasure hook and the hourly sweep."""
    registry.add_domain("idempotency")
    registry.add_table_rule(
        IdempotencyRecord.__tablename__,
        "24 hours after the request, then swept; erased with the account; ends with every item or pet its "
        "answer names",
        owner="idempotency",
        holds="a JSON answer to a creating request (no credentials, no secrets, no file bytes), its keyed "
        "fingerprint",
        personal=("body", "path"),
        ends_with_subjects=end_with,
        owner_column="owner_id",
        residues=residues,
    )
    registry.add_erasure_hook("idempotency", erase_owner)
    registry.add_periodic("idempotency-sweep", lambda _settings: SWEEP_INTERVAL_SECONDS, run_sweep)
