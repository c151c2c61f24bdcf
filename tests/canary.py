"""Looking for canary values the way an auditor would: every row of every table, every file under a folder."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, MetaData, select


def database_text(engine: Engine) -> str:
    """Every value of every row of every table of the live schema, as text (bytes decoded loosely)."""
    metadata = MetaData()
    metadata.reflect(engine)
    parts: list[str] = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        parts.append(bytes(value).decode("latin-1"))
                    elif value is not None:
                        parts.append(str(value))
    return "\n".join(parts)


def files_bytes(folder: Path) -> bytes:
    """The bytes of every file under a folder (the database's own files included, WAL too)."""
    return b"\n".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def tables_holding(engine: Engine, needle: str) -> list[str]:
    """The tables (and columns) whose values hold `needle` (case folded): where a canary is."""
    metadata = MetaData()
    metadata.reflect(engine)
    found = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)).mappings():
                for column, value in row.items():
                    raw = (
                        bytes(value).decode("latin-1")
                        if isinstance(value, bytes | memoryview)
                        else str(value)
                    )
                    if value is not None and needle.lower() in raw.lower():
                        found.append(f"{table.name}.{column}")
    return sorted(set(found))
