"""PostgreSQL keeps deleted rows as dead tuples until a vacuum: erased prompts and destroyed data keys stay
readable in the relation files (crypto-shredding undone) while autovacuum is off.

- `autovacuum_off` names the server (autovacuum or track_counts off) and each personal table whose
  autovacuum is turned off by a storage parameter, with their dead tuples: start-up warns
  (`services.build_services`) and `retention check` fails on each (finding `autovacuum_off`).
- `vacuum_tables` runs VACUUM on tables (outside a transaction, as VACUUM must); the sweeper calls it on
  `data_keys` after a sweep that destroyed data keys, and logs why when it cannot.

On SQLite there is nothing to do: `secure_delete` zeroes deleted rows and the sweeper truncates the WAL.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from petportrait.registry import Registry

log = logging.getLogger(__name__)

SERVER = "(server)"
_MAY_VACUUM = text(
    "SELECT pg_has_role(c.relowner, 'USAGE') OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) "
    "FROM pg_class c WHERE c.relname = :table AND c.relnamespace = current_schema()::regnamespace"
)


@dataclass(frozen=True)
class AutovacuumOff:
    """Where autovacuum does not run: the server (`table` is SERVER) or one table; dead tuples found."""

    table: str
    reason: str
    dead_tuples: int


def personal_tables(registry: Registry) -> list[str]:
    """The tables whose retention rule does not say they hold no personal data."""
    return sorted(
        name for name, rule in registry.table_rules.items() if not rule.rule.startswith("no personal data")
    )


def autovacuum_off(connection: Connection, tables: Iterable[str]) -> list[AutovacuumOff]:
    """On PostgreSQL, where autovacuum does not run among the server and these tables; [] elsewhere."""
    if connection.dialect.name != "postgresql":
        return []
    wanted = sorted(set(tables))
    rows = connection.execute(
        text(
            "SELECT c.relname, coalesce(s.n_dead_tup, 0), "
            "coalesce(array_to_string(c.reloptions, ','), '') "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
            "WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname = ANY(:tables)"
        ),
        {"tables": wanted},
    ).all()
    dead = {name: int(count) for name, count, _ in rows}
    found: list[AutovacuumOff] = []
    server = connection.execute(text("SHOW autovacuum")).scalar()
    counts = connection.execute(text("SHOW track_counts")).scalar()
    if server != "on" or counts != "on":
        setting = "autovacuum" if server != "on" else "track_counts"
        found.append(
            AutovacuumOff(
                SERVER,
                f"the server's {setting} is off: no table is vacuumed unless by hand "
                f"(dead tuples in the personal tables: {sum(dead.values())})",
                sum(dead.values()),
            )
        )
    for name, count, options in rows:
        settings = {item.partition("=")[0]: item.partition("=")[2] for item in options.split(",") if item}
        if settings.get("autovacuum_enabled", "true").lower() in ("false", "off", "0", "no"):
            found.append(AutovacuumOff(name, "autovacuum_enabled=false on the table", int(count)))
    return found


def warn_autovacuum(engine: Engine, registry: Registry) -> list[str]:
    """Log (and return) a warning for each place autovacuum does not run, on PostgreSQL."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as connection:
        found = autovacuum_off(connection, personal_tables(registry))
    warnings = [
        f"PostgreSQL autovacuum does not run for {off.table}: {off.reason} ({off.dead_tuples} dead tuples); "
        "deleted personal data and destroyed data keys stay in the table files until a VACUUM. Turn "
        "autovacuum on (README, 'Deletion, encryption and what an operator must do')"
        for off in found
    ]
    for warning in warnings:
        log.warning(warning)
    return warnings


def vacuum_tables(engine: Engine, tables: Sequence[str]) -> str | None:
    """VACUUM these tables on PostgreSQL, outside a transaction; returns why it could not, or None."""
    if engine.dialect.name != "postgresql" or not tables:
        return None
    preparer = engine.dialect.identifier_preparer
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            for table in tables:
                if not connection.execute(_MAY_VACUUM, {"table": table}).scalar():
                    reason = f"VACUUM of {table} skipped: the database user does not own it"
                    log.warning("%s; destroyed data keys stay in dead tuples until a vacuum", reason)
                    return reason
                connection.exec_driver_sql(f"VACUUM {preparer.quote(table)}")
    except SQLAlchemyError as exc:
        reason = f"VACUUM of {', '.join(tables)} failed: {exc.__class__.__name__}: {str(exc).splitlines()[0]}"
        log.warning("%s; destroyed data keys stay in dead tuples until a vacuum", reason)
        return reason
    return None
