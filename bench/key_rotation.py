"""Key-encryption key rotation: data keys re-wrapped per second by `petportrait keys rotate`'s code.

Builds a fresh migrated database (SQLite in a temporary data folder, or the PostgreSQL of
PETPORTRAIT__DATABASE__URL, whose tables it empties first) holding N data keys wrapped under an old KEK,
as the blob store makes them, then runs `retention.kek.rotate` to a new KEK: each batch read in
storage-key order, unwrapped with the old key, wrapped under the new one and written back in one
transaction, with the audit entries at start and end. The reference, measured in the same run, is the
cryptography alone: a plain loop that unwraps and wraps the same N keys in memory (AES-256-GCM, no
database). The ratio is rotation keys/s over reference keys/s.

    .venv/bin/python bench/key_rotation.py [--keys 100000] [--batch-size 2000]
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select, text

from petportrait.db import insert_rows, make_engine, make_session_factory
from petportrait.migrate import upgrade
from petportrait.retention.kek import rotate, verify_kek
from petportrait.retention.models import DataKey
from petportrait.settings import Settings
from petportrait.storage.crypto import kek_id, unwrap_key, wrap_key

OWNERS = 2000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=2000)
    args = parser.parse_args()
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    owners = [secrets.token_hex(16) for _ in range(OWNERS)]
    storage_keys = [f"photos/{owners[n % OWNERS]}/{secrets.token_hex(16)}/{n}.jpg" for n in range(args.keys)]
    wrapped = [wrap_key(old, secrets.token_bytes(32), key) for key in storage_keys]

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as folder:
        settings = Settings(
            environment="test",
            data_dir=Path(folder),
            security={"secret_key": secrets.token_hex(32)},  # type: ignore[arg-type]
        )
        engine = make_engine(settings.database_url)
        upgrade(engine)
        with engine.begin() as conn:
            for table in ("data_keys", "kek_checks"):
                conn.execute(text(f"DELETE FROM {table}"))
            now = datetime.now(UTC)
            rows = [
                {
                    "storage_key": key,
                    "owner_id": key.split("/")[1],
                    "wrapped_key": sealed,
                    "created_at": now,
                    "kek_id": kek_id(old).hex(),
                }
                for key, sealed in zip(storage_keys, wrapped, strict=True)
            ]
            for start in range(0, len(rows), 10_000):
                insert_rows(conn, DataKey.__table__, rows[start : start + 10_000])  # type: ignore[arg-type]
        session_factory = make_session_factory(engine)
        verify_kek(session_factory, old)

        began = time.perf_counter()
        report = rotate(session_factory, new, old, batch_size=args.batch_size)
        rotation_s = time.perf_counter() - began
        with session_factory() as session:
            left = session.scalar(select(func.count()).where(DataKey.kek_id != kek_id(new).hex()))
        assert report.finished and report.rewrapped == args.keys and left == 0, report

        began = time.perf_counter()
        for key, sealed in zip(storage_keys, wrapped, strict=True):
            wrap_key(new, unwrap_key(old, sealed, key), key)
        reference_s = time.perf_counter() - began
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM data_keys"))
        engine.dispose()

    rotation_rate = args.keys / rotation_s
    reference_rate = args.keys / reference_s
    print(f"database: {engine.dialect.name}, {args.keys} data keys, batches of {args.batch_size}")
    print(f"rotation:  {rotation_s:8.2f} s  {rotation_rate:10.0f} keys/s")
    print(f"reference: {reference_s:8.2f} s  {reference_rate:10.0f} keys/s  (AES-GCM unwrap + wrap only)")
    print(f"ratio (rotation / reference): {rotation_rate / reference_rate:.3f}")


if __name__ == "__main__":
    main()
