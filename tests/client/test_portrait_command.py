"""`petportrait portrait` against a live server: a folder of photos in, portraits out, deletion dates said."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from petportrait.client import Client
from tests.client.conftest import PASSWORD, Live
from tests.conftest import DATA

ROOT = Path(__file__).resolve().parents[2]


def _run(
    live: Live, args: list[str], env: dict[str, str], stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PETPORTRAIT")}
    full_env.update(env)
    full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), full_env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "petportrait.cli", "portrait", *args],
        env=full_env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_command_makes_portraits_from_a_folder_of_photos(live: Live, tmp_path: Path) -> None:
    with Client(live.url) as c:
        c.sign_up(live.address("command"), PASSWORD)
        token = c.token
    assert token
    out = tmp_path / "out"
    started = time.monotonic()
    result = _run(
        live,
        [
            str(DATA / "dog"),
            "--server",
            live.url,
            "--style",
            "oil_painting",
            "--count",
            "2",
            "--out",
            str(out),
        ],
        {"PETPORTRAIT_TOKEN": token},
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    written = sorted(out.glob("*.png"))
    assert [p.name for p in written] == ["dog-oil_painting-1.png", "dog-oil_painting-2.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)
    for path in written:
        assert f"Saved {path}" in result.stdout
    assert "Uploaded 5 of 5 photos" in result.stdout
    for line in ("the photos on 20", "the model on 20", "the portraits on 20"):
        assert line in result.stdout, result.stdout
    assert "Training" in result.stderr  # the progress bar
    print(f"\nportrait command: 5 photos to 2 portraits in {elapsed:.1f} s")


def test_the_command_signs_in_when_asked_and_says_why_it_fails(live: Live, tmp_path: Path) -> None:
    email = live.address("prompted")
    with Client(live.url) as c:
        c.sign_up(email, PASSWORD)
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "notes.jpg").write_text("not a photo")
    result = _run(
        live,
        [str(photos), "--server", live.url, "--out", str(tmp_path / "out")],
        {},
        f"{email}\n{PASSWORD}\n",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"Signed in to {live.url} as {email}" in result.stdout
    assert "rejected notes.jpg: not_an_image" in result.stdout
    assert "error: photos_rejected" in result.stderr
    wrong = _run(live, [str(photos), "--server", live.url], {"PETPORTRAIT_TOKEN": "pp_wrong"})
    assert wrong.returncode == 1 and "error: invalid_token" in wrong.stderr
    missing = _run(live, [str(tmp_path / "nowhere"), "--server", live.url], {"PETPORTRAIT_TOKEN": "pp_wrong"})
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr
