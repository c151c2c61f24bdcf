"""What `retention check` finds against the data inventory: places nobody declared, and residues that the
inventory's rules say cannot exist.

Findings (each makes the check fail):
- undeclared_folder: an entry of the data folder that no store names (a feature wrote somewhere new);
- undeclared_key: a Redis key (queue, rate limits) under a prefix that no store names;
- erased_residue: a row of a store that ends with its account, still there for an erased account;
- orphan_copy: a copy (a stored answer, a message, a delivery) that still names a deleted item;
- hold_text_in_chain: a legal hold's reason or note written verbatim into the hash chain;
- and what each store's own scan finds (`Store.residues`): e.g. orphan_mail (an .eml file no message
  owns), mail_address_in_error (a delivery error that keeps the address), kept_credentials (a stored answer
  of a route that carries credentials, or one that is not JSON).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import MetaData, Table, select
from sqlalchemy.orm import Session

from petportrait.registry import Store, registry_of
from petportrait.retention.models import AuditEntry, LineageLink, Tombstone
from petportrait.settings import Settings

# Files of the data folder that the ground layer itself makes (the SQLite databases and their journals).
GROUND_FILES = ("petportrait.sqlite3", "queue.sqlite3")


def scan(
    session: Session, *, settings: Settings, redis_keys: Iterable[str] = ()
) -> list[tuple[str, str, str]]:
    """(problem, store, detail) for each residue found."""
    registry = registry_of(session)
    stores = list(registry.stores.values())
    found: list[tuple[str, str, str]] = []
    found += _undeclared_folders(settings, stores)
    found += _undeclared_keys(redis_keys, stores, settings)
    found += _erased_residues(session, stores, registry.erased_owners())
    found += _orphan_copies(session)
    found += _hold_text(session)
    for store in stores:
        if store.residues is not None:
            found += [(problem, store.name, detail) for problem, detail in store.residues(session, settings)]
    return found


def _undeclared_folders(settings: Settings, stores: list[Store]) -> list[tuple[str, str, str]]:
    root = settings.data_dir
    if not root.is_dir():
        return []
    declared = {s.location for s in stores if s.medium in ("folder", "blobs") and s.location}
    out = []
    for entry in sorted(root.iterdir()):
        name = entry.name
        if name in declared or any(name.startswith(f) for f in GROUND_FILES):
            continue
        out.append(("undeclared_folder", name, f"{entry} is in the data folder but no store declares it"))
    return out


def _undeclared_keys(
    keys: Iterable[str], stores: list[Store], settings: Settings
) -> list[tuple[str, str, str]]:
    prefixes = tuple(
        s.location.format(limits_namespace=settings.limits.namespace)
        for s in stores
        if s.medium in ("redis", "queue") and s.location
    )
    out = []
    for key in keys:
        if not key.startswith(prefixes):
            out.append(
                ("undeclared_key", key.split(":")[0], f"Redis key {key!r} is under no declared prefix")
            )
    return out


def _table(session: Session, name: str) -> Table | None:
    metadata = MetaData()
    try:
        return Table(name, metadata, autoload_with=session.connection())
    except Exception:  # a store declared for a table this schema does not have
        return None


def _erased_residues(session: Session, stores: list[Store], erased: Any) -> list[tuple[str, str, str]]:
    out = []
    for store in stores:
        if store.medium != "table" or not store.owner_column:
            continue
        table = _table(session, store.name)
        if table is None or store.owner_column not in table.c:
            continue
        column = table.c[store.owner_column]
        query = select(table).where(column.in_(erased))
        if store.name == "outbox_messages":  # the erasure receipt waits for its one delivery
            query = query.where(table.c.kind != "account_erased")
        for row in session.execute(query.limit(100)).mappings():
            out.append(
                (
                    "erased_residue",
                    store.name,
                    f"a row of {store.name} for the erased account {row[column.name]}",
                )
            )
    return out


def _orphan_copies(session: Session) -> list[tuple[str, str, str]]:
    query = select(LineageLink.store, LineageLink.row_id, LineageLink.subject_id).join(
        Tombstone, Tombstone.id == LineageLink.subject_id
    )
    return [
        ("orphan_copy", store, f"row {row_id} still names the deleted item {subject}")
        for store, row_id, subject in session.execute(query.limit(1000))
    ]


def _hold_text(session: Session) -> list[tuple[str, str, str]]:
    out = []
    for seq, details in session.execute(
        select(AuditEntry.seq, AuditEntry.details).where(AuditEntry.action.like("hold.%"))
    ):
        parsed = json.loads(details or "{}")
        for key in ("reason", "note"):
            if isinstance(parsed.get(key), str) and parsed[key]:
                out.append(
                    ("hold_text_in_chain", "audit_log", f"audit entry {seq} keeps a hold's {key} verbatim")
                )
    return out
