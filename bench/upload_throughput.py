"""Upload throughput: photos per second through POST /api/v1/pets/{id}/photos on the real photos.

Runs the whole path (multipart parse, full decode, orientation, metadata strip, re-encode, hashes,
near-duplicate check, blob write, row insert) in-process on a fresh SQLite data folder, several
times, and prints the median. The reference measured in the same run is a bare decode + re-encode of
the same files with Pillow, so the ratio shows what the service adds around the unavoidable image work.

    .venv/bin/python bench/upload_throughput.py [--runs 5]
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


def photos() -> list[Path]:
    return sorted(p for p in DATA.glob("*/*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})


def one_run(files: list[Path]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            environment="test",
            data_dir=Path(tmp),
            database={"url": None},  # type: ignore[arg-type]
            security={"secret_key": secrets.token_hex(32)},  # type: ignore[arg-type]
            # one upload request per photo: the per-account upload rate limit is not what is measured
            limits={"uploads_per_account": "1000000/minute"},  # type: ignore[arg-type]
        )
        with TestClient(create_app(settings)) as client:
            client.post("/api/v1/accounts", json={"email": "b@example.com", "password": "benchmark password"})
            token = client.post(
                "/api/v1/auth/token", json={"email": "b@example.com", "password": "benchmark password"}
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            by_pet: dict[str, list[Path]] = {}
            for path in files:
                by_pet.setdefault(path.parent.name, []).append(path)
            pet_ids = {
                name: client.post(
                    "/api/v1/pets", json={"name": name, "species": "dog"}, headers=headers
                ).json()["id"]
                for name in by_pet
            }
            payloads = [(pet_ids[p.parent.name], p.name, p.read_bytes()) for p in files]
            start = time.perf_counter()
            for pet_id, name, data in payloads:
                response = client.post(
                    f"/api/v1/pets/{pet_id}/photos",
                    headers=headers,
                    files=[("files", (name, data, "image/jpeg"))],
                )
                assert response.status_code in (201, 422), response.text
            elapsed = time.perf_counter() - start
    return len(files) / elapsed


def reference_run(files: list[Path]) -> float:
    payloads = [p.read_bytes() for p in files]
    start = time.perf_counter()
    for data in payloads:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            out = io.BytesIO()
            img.convert("RGB").save(out, "JPEG", quality=92)
    return len(files) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    files = photos()
    if not files:
        raise SystemExit(f"no photos under {DATA}")
    ours = [one_run(files) for _ in range(args.runs)]
    ref = [reference_run(files) for _ in range(args.runs)]
    ours_median, ref_median = statistics.median(ours), statistics.median(ref)
    print(f"photos: {len(files)}  runs: {args.runs}")
    print(f"upload path: {ours_median:.1f} photos/s (median; runs: {', '.join(f'{x:.1f}' for x in ours)})")
    print(f"reference (decode + re-encode only): {ref_median:.1f} photos/s")
    print(f"ratio upload/reference: {ours_median / ref_median:.2f}")


if __name__ == "__main__":
    main()
