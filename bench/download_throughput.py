"""Download throughput: blobs read per second through the blob store, sealed vs plain, in the same run.

Writes N blobs (the real photos of the shared data set, cycled, about 0.1 to 3 MB each) to a local
folder twice: once through a plain LocalBlobStore, once through the EncryptedBlobStore that the service
uses (data keys in a real SQLite database, AES-256-GCM), then reads every blob back, whole (get_bytes,
what the API's content endpoints do) and streamed in 64 KiB chunks (open, what the pages and the export
do). Each figure is the median of several runs; the ratio is sealed over plain. The same for writes.

    .venv/bin/python bench/download_throughput.py [--blobs 200] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from petportrait.db import make_engine, make_session_factory
from petportrait.migrate import upgrade
from petportrait.retention.keys import encrypted_store
from petportrait.settings import Settings
from petportrait.storage.base import BlobStore
from petportrait.storage.local import LocalBlobStore

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dreambooth-pets"


def payloads(count: int) -> list[bytes]:
    files = sorted(p for p in DATA.glob("*/*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not files:
        raise SystemExit(f"no photos under {DATA}")
    datas = [p.read_bytes() for p in files]
    return [datas[i % len(datas)] for i in range(count)]


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(store: BlobStore, blobs: list[bytes]) -> tuple[float, float, float]:
    """(writes/s, whole reads/s, streamed reads/s) through one store."""
    keys = [f"photos/{'a' * 32}/{'b' * 32}/{i}.jpg" for i in range(len(blobs))]

    def write() -> None:
        for key, data in zip(keys, blobs, strict=True):
            store.put_bytes(key, data)

    def read_whole() -> None:
        for key in keys:
            store.get_bytes(key)

    def read_streamed() -> None:
        for key in keys:
            with store.open(key) as stream:
                while stream.read(64 * 1024):
                    pass

    n = len(keys)
    return n / timed(write), n / timed(read_whole), n / timed(read_streamed)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--blobs", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    blobs = payloads(args.blobs)
    results: dict[str, list[tuple[float, float, float]]] = {"plain": [], "sealed": []}
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
            settings = Settings(
                environment="test",
                data_dir=Path(tmp),
                security={"secret_key": secrets.token_hex(32)},  # type: ignore[arg-type]
            )
            engine = make_engine(settings.database_url)
            upgrade(engine)
            plain = LocalBlobStore(Path(tmp) / "plain")
            sealed = encrypted_store(
                settings, make_session_factory(engine), LocalBlobStore(Path(tmp) / "sealed")
            )
            results["plain"].append(measure(plain, blobs))
            results["sealed"].append(measure(sealed, blobs))
            engine.dispose()
    mb = sum(len(b) for b in blobs) / len(blobs) / 1e6
    print(f"blobs: {len(blobs)} (mean {mb:.2f} MB)  runs: {args.runs}")
    names = ("write (put_bytes)", "read whole (get_bytes)", "read streamed (open, 64 KiB)")
    for index, name in enumerate(names):
        plain_median = statistics.median(r[index] for r in results["plain"])
        sealed_median = statistics.median(r[index] for r in results["sealed"])
        print(
            f"{name:<30} plain {plain_median:8.1f} blobs/s   sealed {sealed_median:8.1f} blobs/s   "
            f"ratio sealed/plain {sealed_median / plain_median:.2f}"
        )


if __name__ == "__main__":
    main()
