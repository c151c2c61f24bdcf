"""Upload work of byte-identical duplicates: 8 copies of one large PNG in one request against that PNG alone.

Both through POST /api/v1/pets/{id}/photos in-process, on a fresh SQLite data folder per run (so the
single upload is never itself a duplicate). Before issue 13 every copy was fully decoded, converted,
re-encoded and hashed before being found a duplicate (about 6x one upload); now a copy is refused by the
hash of its raw bytes before any decoding, so 8 copies should cost little more than one.

    .venv/bin/python bench/upload_duplicates.py [--runs 3] [--side 2600]
"""

from __future__ import annotations

import argparse
import io
import secrets
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from petportrait.settings import Settings
from petportrait.web.app import create_app

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dreambooth-pets"


def large_png(side: int) -> bytes:
    """A real photo of the data set scaled up to side x side, as a PNG (several MB)."""
    source = sorted(p for p in (DATA / "dog").iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[0]
    with Image.open(source) as image:
        big = image.convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    big.save(out, "PNG", compress_level=1)
    return out.getvalue()


def timed_upload(data: bytes, copies: int) -> tuple[float, dict[str, int]]:
    """Seconds for one request carrying `copies` copies of `data`, and its stored/rejected counts."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            environment="test",
            data_dir=Path(tmp),
            database={"url": None},  # type: ignore[arg-type]
            security={"secret_key": secrets.token_hex(32)},  # type: ignore[arg-type]
            queue={"embedded_consumer": False},  # type: ignore[arg-type]
        )
        with TestClient(create_app(settings)) as client:
            client.post("/api/v1/accounts", json={"email": "b@example.com", "password": "benchmark password"})
            token = client.post(
                "/api/v1/auth/token", json={"email": "b@example.com", "password": "benchmark password"}
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            pet_id = client.post(
                "/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers=headers
            ).json()["id"]
            files = [("files", (f"copy{n}.png", data, "image/png")) for n in range(copies)]
            start = time.perf_counter()
            response = client.post(f"/api/v1/pets/{pet_id}/photos", headers=headers, files=files)
            elapsed = time.perf_counter() - start
            assert response.status_code == 201, response.text
            body = response.json()
    return elapsed, {"stored": body["stored"], "rejected": body["rejected"]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--side", type=int, default=2600)
    parser.add_argument("--copies", type=int, default=8)
    args = parser.parse_args()
    data = large_png(args.side)
    print(f"one PNG: {args.side}x{args.side}, {len(data) / 1e6:.1f} MB")
    one, many = [], []
    for _ in range(args.runs):
        seconds, _counts = timed_upload(data, 1)
        one.append(seconds)
        seconds, counts = timed_upload(data, args.copies)
        many.append(seconds)
    a, b = statistics.median(one), statistics.median(many)
    print(f"1 copy:  {a * 1000:.0f} ms (median of {args.runs})")
    print(f"{args.copies} copies: {b * 1000:.0f} ms (median of {args.runs}); {counts}")
    print(f"ratio: {b / a:.2f}x")


if __name__ == "__main__":
    main()
