"""``petportrait demo``: train on a folder of photos and render a few styles, with progress bars."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import PngImagePlugin
from tqdm import tqdm

from petportrait.ml.models import pick_device, resolve_base_model
from petportrait.ml.render import Renderer, RenderRequest
from petportrait.ml.styles import get_style
from petportrait.ml.train import InvalidTrainSpec, TrainProgress, TrainSpec, train_lora

DEMO_STYLES = ["renaissance_noble", "watercolour", "pop_art", "van_gogh_night_sky"]
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def run_demo(
    *,
    photos_dir: Path,
    out_dir: Path,
    models_dir: Path,
    base_model: str | None,
    device: str | None,
    styles: list[str] | None,
    steps: int | None,
    species: str,
    seed: int,
) -> list[Path]:
    """Train a LoRA on the photos in ``photos_dir``; render one PNG per style into ``out_dir``, listed."""
    chosen_styles = styles or DEMO_STYLES
    for name in chosen_styles:
        get_style(name)  # an unknown style fails before any work is done
    if not photos_dir.is_dir():
        raise InvalidTrainSpec(f"the photo folder {photos_dir} does not exist")
    photos = sorted(p for p in photos_dir.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
    run_device = pick_device(device)
    model = resolve_base_model(base_model, device=run_device, models_dir=models_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    spec = TrainSpec(
        base_model=model.source,
        photos=photos,
        species=species,
        steps=steps,
        seed=seed,
        device=run_device,
    )
    with tqdm(desc="training", unit="step", total=steps) as bar:

        def report(update: TrainProgress) -> None:
            bar.total = update.total
            bar.update(update.step - bar.n)
            bar.set_postfix(loss=f"{update.loss:.4f}")

        trained = train_lora(spec, progress=report)
    renderer = Renderer(model.source, run_device)
    for name in tqdm(chosen_styles, desc="rendering", unit="style"):
        result = renderer.render(
            RenderRequest(species=species, token=spec.token, lora=trained.data, style=name, seed=seed)
        )
        info = PngImagePlugin.PngInfo()
        info.add_text("petportrait", json.dumps(result.params))
        path = out_dir / (f"{name}-preview.png" if result.is_preview else f"{name}.png")
        result.images[0].save(path, pnginfo=info)
        written.append(path)
    return written
