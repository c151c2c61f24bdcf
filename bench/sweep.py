"""Sweep throughput: expired items deleted per second by the sweeper (local storage, SQLite).

Builds a fresh data folder with N expired items (60% photos, 30% renders, 10% models, spread over 2,000
accounts with one pet each; a render job makes 2.5 portraits on average, a training job one model; each
blob a small file at its key's path, each with its wrapped data key in `data_keys`), then runs one
`sweep_once`: blob deletion, a tombstone, a deletion receipt, a hash-chained audit entry and the
destruction of the data key per item, in batches. The reference,
measured in the same run on a second data folder of the same shape, is a plain loop that deletes each
item's file and row one at a time (no tombstone, no audit), committing each; the ratio is sweeper
items/s over reference items/s. A third data folder of the same shape measures the blob deletion alone
(the store's `delete_many`, no database): what the disk allows, which bounds the sweeper.

Set BENCH_TMP to put the data folders elsewhere (by default the system's temporary folder), e.g.
BENCH_TMP=/dev/shm to take the disk out of the figure.

    .venv/bin/python bench/sweep.py [--items 100000] [--reference-items 5000] [--batch-size 5000]
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, select

from petportrait.accounts.models import User
from petportrait.db import make_engine, make_session_factory, new_id
from petportrait.lifecycle import sweeper
from petportrait.migrate import upgrade
from petportrait.pets.models import Pet, Photo
from petportrait.portraits.models import PetModel, Render
from petportrait.retention import audit
from petportrait.retention.models import DataKey, Tombstone
from petportrait.services import build_registry
from petportrait.settings import Settings
from petportrait.storage.local import LocalBlobStore

ACCOUNTS = 2000
START = datetime(2026, 1, 1, tzinfo=UTC)


def build(
    root: Path, items: int, seed: int
) -> tuple[Any, LocalBlobStore, Settings, list[tuple[Any, str, str]]]:
    """A migrated SQLite database and blob folder holding `items` expired items; returns them too."""
    settings = Settings(
        environment="test",
        data_dir=root,
        security={"secret_key": secrets.token_hex(32)},  # type: ignore[arg-type]
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    blobs = LocalBlobStore(settings.blob_root)
    rng = random.Random(seed)
    users = [new_id() for _ in range(ACCOUNTS)]
    pets = {u: new_id() for u in users}
    rows: dict[Any, list[dict[str, Any]]] = {Photo: [], PetModel: [], Render: []}
    made: list[tuple[Any, str, str]] = []
    render_jobs: dict[str, str] = {}
    for i in range(items):
        owner = users[i % ACCOUNTS]
        pet = pets[owner]
        item_id = new_id()
        at = START + timedelta(seconds=rng.randint(0, 86400))
        roll = rng.random()
        common = {"id": item_id, "owner_id": owner, "pet_id": pet, "sha256": "0" * 64, "size": 16}
        if roll < 0.6:
            model, key = Photo, f"photos/{owner}/{pet}/{item_id}.jpg"
            rows[Photo].append(
                {
                    **common,
                    "storage_key": key,
                    "original_filename": "a.jpg",
                    "content_type": "image/jpeg",
                    "width": 512,
                    "height": 512,
                    "phash": "0" * 16,
                    "uploaded_at": at,
                    "expires_at": at + timedelta(days=30),
                }
            )
        elif roll < 0.9:
            if owner not in render_jobs or rng.random() < 0.4:  # a render job makes 1 to 8 portraits
                render_jobs[owner] = new_id()
            job = render_jobs[owner]
            model, key = Render, f"renders/{owner}/{job}/a1/{item_id}.png"
            rows[Render].append(
                {
                    **common,
                    "storage_key": key,
                    "job_id": job,
                    "position": 0,
                    "state": "ready",
                    "seed": 1,
                    "width": 64,
                    "height": 64,
                    "is_preview": True,
                    "params": {},
                    "content_type": "image/png",
                    "created_at": at,
                    "rendered_at": at,
                    "expires_at": at + timedelta(days=30),
                }
            )
        else:
            job = new_id()
            model, key = PetModel, f"models/{owner}/{job}/a1/{item_id}.safetensors"
            rows[PetModel].append(
                {
                    **common,
                    "storage_key": key,
                    "state": "ready",
                    "base_model": "preview",
                    "is_preview": True,
                    "token": "sks",
                    "species": "dog",
                    "photo_ids": [],
                    "created_at": at,
                    "trained_at": at,
                    "expires_at": at + timedelta(days=7),
                }
            )
        path = blobs.root.joinpath(*key.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 16)
        made.append((model, item_id, key))
    with engine.begin() as conn:
        conn.execute(
            insert(User),
            [
                {
                    "id": u,
                    "email": f"{u}@example.com",
                    "password_hash": "x",
                    "role": "user",
                    "created_at": START,
                }
                for u in users
            ],
        )
        conn.execute(
            insert(Pet),
            [
                {"id": pets[u], "owner_id": u, "name": "Rex", "species": "dog", "created_at": START}
                for u in users
            ],
        )
        for model, values in rows.items():
            for start in range(0, len(values), 5000):
                conn.execute(insert(model), values[start : start + 5000])
        data_keys = [
            {
                "storage_key": key,
                "owner_id": key.split("/")[1],
                "wrapped_key": os.urandom(69),
                "created_at": START,
            }
            for _, _, key in made
        ]
        for start in range(0, len(data_keys), 5000):
            conn.execute(insert(DataKey), data_keys[start : start + 5000])
    return engine, blobs, settings, made


def sweep_rate(items: int, batch_size: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        engine, blobs, settings, _ = build(Path(tmp), items, seed=1)
        factory = make_session_factory(engine, info={"registry": build_registry(), "settings": settings})
        now = START + timedelta(days=32)
        started = time.perf_counter()
        report = sweeper.sweep_once(factory, blobs, now=now, settings=settings, batch_size=batch_size)
        elapsed = time.perf_counter() - started
        assert report.total_purged == items and not report.errors, report
        with factory() as session:
            assert session.scalar(select(func.count()).select_from(Tombstone)) == items
            assert audit.verify(session).entries == items
            assert session.scalar(select(func.count()).select_from(DataKey)) == 0
        assert next(iter(blobs.list("")), None) is None
        engine.dispose()
    return items / elapsed, elapsed


def storage_rate(items: int, batch_size: int) -> tuple[float, float]:
    """The blob deletion alone: the same tree of files deleted by the store, batch by batch, with no
    database work at all. The sweeper cannot beat it; on a disk that frees blocks slowly (ext4 mounted
    with ``discard``, network storage) it is what bounds the sweep."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        engine, blobs, _, made = build(Path(tmp), items, seed=1)
        engine.dispose()
        keys = [key for _, _, key in made]
        started = time.perf_counter()
        for start in range(0, len(keys), batch_size):
            assert blobs.delete_many(keys[start : start + batch_size]) == {}
        elapsed = time.perf_counter() - started
        assert next(iter(blobs.list("")), None) is None
    return items / elapsed, elapsed


def reference_rate(items: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        engine, blobs, settings, made = build(Path(tmp), items, seed=2)
        factory = make_session_factory(engine, info={"registry": build_registry(), "settings": settings})
        started = time.perf_counter()
        with factory() as session:
            for model, item_id, key in made:
                blobs.delete(key)
                session.execute(delete(model).where(model.id == item_id))
                session.commit()
        elapsed = time.perf_counter() - started
        engine.dispose()
    return items / elapsed, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--reference-items", type=int, default=5_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    args = parser.parse_args()
    rate, elapsed = sweep_rate(args.items, args.batch_size)
    print(f"sweeper:   {args.items} expired items in {elapsed:.2f}s = {rate:,.0f} items/s")
    ref, ref_elapsed = reference_rate(args.reference_items)
    print(f"reference: {args.reference_items} items one at a time in {ref_elapsed:.2f}s = {ref:,.0f} items/s")
    floor, floor_elapsed = storage_rate(args.items, args.batch_size)
    print(
        f"storage:   the same {args.items} blobs deleted alone (no database) in {floor_elapsed:.2f}s"
        f" = {floor:,.0f} items/s; the sweeper ran at {rate / floor:.0%} of it"
    )
    print(f"ratio:     {rate / ref:.2f}x the plain loop (target: at least 5,000 items/s)")


if __name__ == "__main__":
    main()
