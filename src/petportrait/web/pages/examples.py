"""Example images of the style presets, made once by the preview model and cached in the data folder.

When no real model is configured, each preset is rendered once with the bundled preview model (no pet's
LoRA: a plain "dog" in that style) in a background thread, and saved as
`<data_dir>/style-examples/<name>.png`. A page never waits for them: until an image exists it shows a
placeholder that asks again a few seconds later. The images are marked as previews by the renderer itself.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

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
    try:
        from petportrait.ml.preview import ensure_preview_model
        from petportrait.ml.render import Renderer, RenderRequest

        folder = examples_dir(settings)
        folder.mkdir(parents=True, exist_ok=True)
        source = ensure_preview_model(settings.models_dir)
        renderer = Renderer(str(source), "cpu")
        size = settings.ml.resolution or renderer.native_size
        size = max(64, min(256, size - size % 8))
        for name in names:
            target = example_path(settings, name)
            if target.is_file():
                continue
            result = renderer.render(
                RenderRequest(
                    species="dog", style=name, seed=EXAMPLE_SEED, steps=EXAMPLE_STEPS, width=size, height=size
                )
            )
            partial = target.with_suffix(f".{os.getpid()}.tmp")
            result.images[0].save(partial, format="PNG")
            os.replace(partial, target)
    except Exception as exc:  # shown on the styles page as a sentence; the gallery still works without
        log.exception("could not make the style examples")
        _failures[examples_dir(settings)] = f"{type(exc).__name__}: {exc}"
