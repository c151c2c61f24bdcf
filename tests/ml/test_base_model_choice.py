"""SDXL by default where the CUDA device's memory allows it, SD 1.5 below, with the reason said."""

from __future__ import annotations

from pathlib import Path

from petportrait.ml.models import DEFAULT_CUDA_MODEL, DEFAULT_SDXL_MODEL, resolve_base_model
from petportrait.ml.train import memory_savers

GIB = 1024**3


def test_a_cuda_device_with_enough_memory_gets_sdxl_and_says_why(tmp_path: Path) -> None:
    model = resolve_base_model(None, device="cuda", models_dir=tmp_path, memory_bytes=80 * GIB)
    assert (model.source, model.family) == (DEFAULT_SDXL_MODEL, "sdxl")
    assert "80 GiB" in model.reason and "PETPORTRAIT__ML__BASE_MODEL" in model.reason


def test_a_smaller_cuda_device_gets_sd15_and_says_why(tmp_path: Path) -> None:
    model = resolve_base_model(None, device="cuda:1", models_dir=tmp_path, memory_bytes=12 * GIB)
    assert (model.source, model.family) == (DEFAULT_CUDA_MODEL, "sd15")
    assert "12 GiB, under the 15 GiB SDXL needs" in model.reason


def test_a_configured_model_wins_over_the_device(tmp_path: Path) -> None:
    model = resolve_base_model(
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        device="cuda",
        models_dir=tmp_path,
        memory_bytes=80 * GIB,
    )
    assert (model.family, model.reason) == ("sd15", "configured")


def test_sdxl_on_cuda_trains_with_the_recipes_memory_savers() -> None:
    assert memory_savers("sdxl", "cuda").gradient_checkpointing is True
    assert memory_savers("sd15", "cuda") == (False, False)
    assert memory_savers("sdxl", "cpu") == (False, False)
