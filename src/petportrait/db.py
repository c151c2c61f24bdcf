"""Database: engine, sessions and the declarative Base shared by every domain's models."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    TypeDecorator,
    create_engine,
    event,
    insert,
    make_url,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from petportrait.files import private_sqlite_file

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC on every backend and always read back timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not UTC:
            if value.tzinfo is None:
                raise ValueError("naive datetimes are not stored; use petportrait.clock.utcnow()")
            value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def new_id() -> str:
    """A new random identifier (UUID4, 32 hex characters)."""
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    """Base of every table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), str: String(255)}


class IdMixin:
    """A string primary key made by new_id()."""

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for the URL; SQLite gets WAL, foreign keys and a busy timeout, and its file (with its
    -wal and -shm files) is readable by the service's user only."""
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            private_sqlite_file(Path(database))
        engine = create_engine(
            url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30}, pool_pre_ping=True
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA secure_delete=ON")  # deleted values are zeroed, not left in free pages
            cursor.close()

        return engine
    # A database that does not answer (a hung network path) is an error within seconds, not a stuck call.
    connect_args = {"connect_timeout": 10} if url.startswith("postgresql") else {}
    return create_engine(
        url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20, connect_args=connect_args
    )


def make_session_factory(engine: Engine, *, info: dict[str, Any] | None = None) -> sessionmaker[Session]:
    """A session factory whose objects stay readable after commit; `info` is every session's `info`."""
    return sessionmaker(bind=engine, expire_on_commit=False, info=dict(info or {}))


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


_BULK_STATEMENTS: dict[tuple[Table, type[Any], tuple[str, ...]], tuple[str, list[tuple[str, Any]], bool]] = {}


def insert_rows(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert many rows of one table (dicts with the same columns) with one statement and many parameter
    sets: what ``connection.execute(insert(table), rows)`` does, without building SQLAlchemy's parameter
    structures row by row (a sweep writes tombstones and audit entries by the thousand). The statement and
    each column's bind processor (UTC timestamps, JSON...) are looked up once per table and dialect."""
    if not rows:
        return
    dialect = connection.dialect
    columns = tuple(rows[0])
    cache_key = (table, type(dialect), columns)
    found = _BULK_STATEMENTS.get(cache_key)
    if found is None:
        compiled = insert(table).compile(dialect=dialect, column_keys=list(columns))
        positional = bool(compiled.positional)
        names = list(compiled.positiontup or ()) if positional else list(columns)
        if sorted(names) != sorted(columns):  # bind names that are not the column names: the plain way
            connection.execute(insert(table), list(rows))
            return
        processors = [
            (name, table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in names
        ]
        found = (str(compiled), processors, positional)
        _BULK_STATEMENTS[cache_key] = found
    sql, processors, positional = found
    if positional:
        params: list[Any] = [
            tuple(row[name] if process is None else process(row[name]) for name, process in processors)
            for row in rows
        ]
    else:
        params = [
            {name: row[name] if process is None else process(row[name]) for name, process in processors}
            for row in rows
        ]
    connection.exec_driver_sql(sql, params)
