"""Transparency log at scale: append rate, integration rate, proof sizes and times, checkpoint time.

Builds a fresh SQLite database (or uses the PostgreSQL database of PETPORTRAIT__DATABASE__URL, whose
schema it drops and rebuilds: never point it at data you keep) and appends N audit entries with
`audit.record_many` in transactions of `--batch` entries, integrating them into the Merkle tree after each
transaction (`transparency.integrate`, as the periodic checkpoint task does, only more often). Then it
signs a checkpoint, asks for inclusion proofs of random entries and consistency proofs between random
sizes, checks each, and times a checkpoint after a further `--batch` entries (what the periodic task costs
on a log of N entries). Figures are printed one a line.

Set BENCH_TMP to put the SQLite file elsewhere (by default the system's temporary folder).

    .venv/bin/python bench/transparency.py [--entries 1000000] [--batch 1000] [--proofs 1000]
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from petportrait.db import make_engine, make_session_factory
from petportrait.migrate import upgrade
from petportrait.retention import audit, merkle, transparency
from petportrait.retention.receipt_check import check_receipt
from petportrait.settings import Settings


def _events(start: int, count: int) -> list[audit.AuditEvent]:
    return [
        audit.AuditEvent(
            action="photo.deleted",
            actor_id=None,
            subject_kind="photo",
            subject_id=f"{start + i:032x}",
            owner_id=f"{(start + i) % 5000:032x}",
            purpose="expired",
            details={"size": 1024 + i % 100},
        )
        for i in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--proofs", type=int, default=1000)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="pp-tlog-", dir=os.environ.get("BENCH_TMP")))
    settings = Settings(
        environment="test",
        data_dir=root,
        security={"secret_key": secrets.token_hex(32)},  # type: ignore[arg-type]
    )
    engine = make_engine(settings.database_url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    upgrade(engine)
    factory = make_session_factory(engine)
    print(f"database: {engine.dialect.name}; entries: {args.entries:,}; batch: {args.batch:,}")

    append_s = integrate_s = 0.0
    done = 0
    while done < args.entries:
        count = min(args.batch, args.entries - done)
        events = _events(done, count)
        started = time.perf_counter()
        with factory() as session:
            audit.record_many(session, events)
            session.commit()
        middle = time.perf_counter()
        with factory() as session:
            transparency.integrate(session)
            session.commit()
        append_s += middle - started
        integrate_s += time.perf_counter() - middle
        done += count
        if done % 100_000 < count:
            print(f"  ... {done:,} entries, {done / (append_s + integrate_s):,.0f}/s so far", flush=True)
    total = append_s + integrate_s
    print(f"append (audit chain only): {args.entries / append_s:,.0f} entries/s")
    print(f"integrate (tree nodes): {args.entries / integrate_s:,.0f} entries/s")
    print(f"append with the tree kept: {args.entries / total:,.0f} entries/s ({total:.1f} s in all)")

    with factory() as session:
        started = time.perf_counter()
        checkpoint = transparency.sign_checkpoint(session, settings)
        session.commit()
        print(f"first checkpoint at {checkpoint.size:,}: {(time.perf_counter() - started) * 1000:.1f} ms")
        nodes = session.execute(text("SELECT count(*) FROM tlog_nodes")).scalar_one()
        print(f"tree nodes stored: {nodes:,} ({nodes / checkpoint.size:.2f} per entry)")

    rng = random.Random(7)
    size = checkpoint.size
    root_hash = bytes.fromhex(checkpoint.root)
    times, lengths = [], []
    with factory() as session:
        for _ in range(args.proofs):
            index = rng.randrange(size)
            started = time.perf_counter()
            path = transparency.inclusion_proof(session, index=index, size=size)
            times.append(time.perf_counter() - started)
            lengths.append(len(path))
            leaf = session.execute(
                text("SELECT hash FROM audit_log WHERE seq = :s"), {"s": index + 1}
            ).scalar_one()
            merkle.verify_inclusion(merkle.leaf_hash(bytes.fromhex(leaf)), index, size, path, root_hash)
    print(
        f"inclusion proof at {size:,}: {statistics.mean(lengths):.1f} hashes "
        f"({statistics.mean(lengths) * 32:.0f} bytes), median {statistics.median(times) * 1000:.2f} ms, "
        f"p99 {sorted(times)[int(len(times) * 0.99) - 1] * 1000:.2f} ms"
    )

    times, lengths = [], []
    with factory() as session:
        for _ in range(args.proofs):
            first = rng.randrange(1, size)
            started = time.perf_counter()
            path = transparency.consistency_proof(session, first=first, second=size)
            times.append(time.perf_counter() - started)
            lengths.append(len(path))
            merkle.verify_consistency(first, size, path, transparency.root_hash(session, first), root_hash)
    print(
        f"consistency proof to {size:,}: {statistics.mean(lengths):.1f} hashes "
        f"({statistics.mean(lengths) * 32:.0f} bytes), median {statistics.median(times) * 1000:.2f} ms"
    )

    with factory() as session:
        started = time.perf_counter()
        receipt = transparency.receipt(session, settings, rng.randrange(1, size + 1))
        made = time.perf_counter() - started
        started = time.perf_counter()
        check_receipt(receipt)
        checked = time.perf_counter() - started
    print(f"receipt: made in {made * 1000:.1f} ms, checked offline in {checked * 1000:.2f} ms")

    with factory() as session:
        audit.record_many(session, _events(size, args.batch))
        session.commit()
    with factory() as session:
        started = time.perf_counter()
        checkpoint = transparency.sign_checkpoint(session, settings)
        session.commit()
    print(
        f"checkpoint at {checkpoint.size:,} after {args.batch:,} new entries (the periodic task): "
        f"{(time.perf_counter() - started) * 1000:.1f} ms"
    )
    print(f"database file: {root}")


if __name__ == "__main__":
    main()
