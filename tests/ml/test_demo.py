"""The demo: train on a folder of photos and render a few styles into PNGs, with the preview model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from petportrait.ml.demo import run_demo
from petportrait.ml.styles import UnknownStyle

from .conftest import PETS


def test_the_demo_trains_and_writes_one_marked_png_per_style(
    tmp_path: Path, models_dir: Path, preview_model: Path
) -> None:
    written = run_demo(
        photos_dir=PETS / "dog2",
        out_dir=tmp_path / "out",
        models_dir=models_dir,
        base_model=None,
        device="cpu",
        styles=["pop_art", "watercolour"],
        steps=3,
        species="dog",
        seed=3,
    )
    assert [p.name for p in written] == ["pop_art-preview.png", "watercolour-preview.png"]
    for path in written:
        with Image.open(path) as image:
            assert image.size == (256, 256)
            params = json.loads(image.text["petportrait"])  # type: ignore[attr-defined]
        assert params["preview"] is True and params["species"] == "dog" and params["lora_sha256"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in written)


def test_an_unknown_style_fails_before_any_work(tmp_path: Path, models_dir: Path) -> None:
    with pytest.raises(UnknownStyle):
        run_demo(
            photos_dir=PETS / "dog2",
            out_dir=tmp_path / "out",
            models_dir=models_dir,
            base_model=None,
            device="cpu",
            styles=["cubism"],
            steps=3,
            species="dog",
            seed=3,
        )
    assert not (tmp_path / "out").exists()
