"""Example images of the style presets, made once by the preview model and cached in the data folder.

When no real model is configured, each preset is rendered once with the bundled preview model (no pet's
LoRA: a plain "dog" in that style) by a process of its own started from a background thread, and saved as
`<data_dir>/style-examples/<name>.png`. A page never waits for them: until an image exists it shows a
placeholder that asks again a few seconds later. The images are marked as previews by the renderer itself.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

from petportrait.files import FILE_MODE, private_dir
from petportrait.ml.styles import list_styles
from petportrait.settings import Settings

log = logging.getLogger(__name__)

EXAMPLE_STEPS = 8
EXAMPLE_SEED = 7
_lock = threading.Lock()
_threads: dict[Path, threading.Thread] = {}
_failures: dict[Path, str] = {}


def examples_dir(settings: Settings) -> Path:
    return (settings.data_dir / "style-examples").resolve()


def example_path(settings: Settings, name: str) -> Path:
    return examples_dir(settings) / f"{name}.png"


def missing(settings: Settings) -> list[str]:
    """The presets whose example image is not made yet."""
    return [s.name for s in list_styles() if not example_path(settings, s.name).is_file()]


def failure(settings: Settings) -> str | None:
    """Why making the examples failed, if it did."""
    return _failures.get(examples_dir(settings))


def ensure_started(settings: Settings) -> bool:
    """Start making the missing examples in the background (once per data folder); True while it runs."""
    folder = examples_dir(settings)
    todo = missing(settings)
    if not todo or folder in _failures:
        return False
    with _lock:
        thread = _threads.get(folder)
        if thread is not None and thread.is_alive():
            return True
        thread = threading.Thread(
            target=_make_examples, args=(settings, todo), name="style-examples", daemon=True
        )
        _threads[folder] = thread
        thread.start()
    return True


def _make_examples(settings: Settings, names: list[str]) -> None:
    """Run the maker in a process of its own: loading a pipeline is not safe next to the job consumer's."""
    command = [
        sys.executable,
        "-m",
        "petportrait.web.pages.examples",
        "--out",
        str(examples_dir(settings)),
        "--models",
        str(settings.models_dir),
        "--size",
        str(settings.ml.resolution or 0),
        *names,
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        _failures[examples_dir(settings)] = f"{type(exc).__name__}: {exc}"
        return
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or [f"it exited with status {result.returncode}"])[-1]
        log.error("could not make the style examples: %s", result.stderr[-4000:])
        _failures[examples_dir(settings)] = last


def make_examples(out: Path, models_dir: Path, size: int, names: list[str]) -> None:
    """Render each named preset once with the preview model into `out` (one PNG per preset)."""
    from petportrait.ml.preview import ensure_preview_model
    from petportrait.ml.render import Renderer, RenderRequest

    private_dir(out)
    source = ensure_preview_model(models_dir)
    renderer = Renderer(str(source), "cpu")
    side = size or renderer.native_size
    side = max(64, min(256, side - side % 8))
    for name in names:
        target = out / f"{name}.png"
        if target.is_file():
            continue
        result = renderer.render(
            RenderRequest(
                species="dog", style=name, seed=EXAMPLE_SEED, steps=EXAMPLE_STEPS, width=side, height=side
            )
        )
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        result.images[0].save(partial, format="PNG")
        partial.chmod(FILE_MODE)
        os.replace(partial, target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make the style examples with the preview model.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--size", type=int, default=0)
    parser.add_argument("names", nargs="+")
    args = parser.parse_args(argv)
    with contextlib.suppress(OSError):
        os.nice(10)  # pages and trainings come first
    make_examples(args.out, args.models, args.size, args.names)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
