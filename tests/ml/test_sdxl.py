"""The SDXL family: two text encoders, pooled embeddings and size conditioning, on a tiny random SDXL."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from petportrait.ml.models import resolve_base_model
from petportrait.ml.render import Renderer, RenderRequest
from petportrait.ml.train import train_lora

from .conftest import build_tiny_sdxl, tiny_spec


def test_an_sdxl_model_trains_and_renders_with_its_lora(
    tmp_path: Path, preview_model: Path, dog_photos: list[Path]
) -> None:
    folder = build_tiny_sdxl(tmp_path / "tiny-sdxl", preview_model / "tokenizer")
    model = resolve_base_model(str(folder), device="cpu", models_dir=tmp_path)
    assert (model.family, model.is_preview) == ("sdxl", False)

    trained = train_lora(
        tiny_spec(
            folder, dog_photos, tmp_path / "dog-xl.safetensors", species="dog", steps=3, learning_rate=1e-2
        )
    )
    assert trained.metadata["family"] == "sdxl" and trained.metadata["preview"] == "false"

    renderer = Renderer(model.source, "cpu")
    assert renderer.native_size == 64
    ask = RenderRequest(species="dog", style="royal_portrait", seed=5, steps=4)
    plain = renderer.render(ask)
    with_lora = renderer.render(RenderRequest(**{**ask.__dict__, "lora_path": trained.path}))
    assert not plain.is_preview and plain.params["family"] == "sdxl"
    assert plain.images[0].size == (64, 64)
    difference = np.abs(np.asarray(plain.images[0], dtype=int) - np.asarray(with_lora.images[0], dtype=int))
    assert difference.mean() > 0.5
    assert renderer.render(ask).images[0].tobytes() == plain.images[0].tobytes()
