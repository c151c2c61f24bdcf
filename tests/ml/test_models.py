"""Choosing the device and the base model, and errors that say how to point at a local copy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from petportrait.ml.models import (
    BASE_MODEL_ENV,
    DEFAULT_CUDA_MODEL,
    DeviceUnavailable,
    ModelLoadError,
    load_pipeline,
    pick_device,
    resolve_base_model,
)
from petportrait.ml.preview import PREVIEW_MODEL_ID

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@no_cuda
def test_without_a_gpu_the_device_is_the_cpu() -> None:
    if not torch.backends.mps.is_available():
        assert pick_device(None) == "cpu"
    assert pick_device("cpu") == "cpu"


@no_cuda
def test_a_configured_device_that_is_missing_is_refused() -> None:
    with pytest.raises(DeviceUnavailable, match="no CUDA"):
        pick_device("cuda")
    with pytest.raises(DeviceUnavailable, match="unknown device"):
        pick_device("warp-drive")


def test_with_nothing_configured_a_cpu_gets_the_preview_model(models_dir: Path, preview_model: Path) -> None:
    model = resolve_base_model(None, device="cpu", models_dir=models_dir)
    assert model.is_preview and model.family == "sd15"
    assert Path(model.source) == preview_model


def test_the_preview_model_can_be_asked_for_by_name(models_dir: Path, preview_model: Path) -> None:
    model = resolve_base_model(PREVIEW_MODEL_ID, device="cuda", models_dir=models_dir)
    assert model.is_preview and Path(model.source) == preview_model


def test_with_nothing_configured_a_gpu_gets_stable_diffusion_1_5(tmp_path: Path) -> None:
    model = resolve_base_model(None, device="cuda", models_dir=tmp_path)
    assert (model.source, model.is_preview, model.family) == (DEFAULT_CUDA_MODEL, False, "sd15")
    assert not any(tmp_path.iterdir())  # nothing was built


def test_hub_ids_name_their_family(tmp_path: Path) -> None:
    sdxl = resolve_base_model("stabilityai/stable-diffusion-xl-base-1.0", device="cuda", models_dir=tmp_path)
    assert sdxl.family == "sdxl" and not sdxl.is_preview
    assert (
        resolve_base_model("runwayml/stable-diffusion-v1-5", device="cuda", models_dir=tmp_path).family
        == "sd15"
    )


def test_a_local_folder_is_used_with_the_family_of_its_model_index(tmp_path: Path) -> None:
    folder = tmp_path / "sdxl-copy"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    model = resolve_base_model(str(folder), device="cuda", models_dir=tmp_path)
    assert (Path(model.source), model.family, model.is_preview) == (folder.resolve(), "sdxl", False)


def test_a_missing_folder_says_how_to_point_at_a_local_copy(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as caught:
        resolve_base_model(str(tmp_path / "nowhere"), device="cuda", models_dir=tmp_path)
    message = str(caught.value)
    assert "does not exist" in message and BASE_MODEL_ENV in message and "local" in message


def test_a_folder_without_a_model_index_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"model_index\.json"):
        resolve_base_model(str(tmp_path), device="cuda", models_dir=tmp_path)


def test_an_unsupported_pipeline_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(ModelLoadError, match="not supported"):
        resolve_base_model(str(tmp_path), device="cuda", models_dir=tmp_path)


def test_weights_that_cannot_be_loaded_give_a_clear_error(tmp_path: Path, preview_model: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(preview_model / "model_index.json", broken / "model_index.json")
    with pytest.raises(ModelLoadError) as caught:
        load_pipeline(str(broken), device="cpu", dtype=torch.float32)
    assert str(broken) in str(caught.value) and BASE_MODEL_ENV in str(caught.value)


def test_the_preview_model_loads_through_from_pretrained(preview_model: Path) -> None:
    pipeline = load_pipeline(str(preview_model), device="cpu", dtype=torch.float32)
    assert type(pipeline).__name__ == "StableDiffusionPipeline"
    assert pipeline.unet.dtype == torch.float32 and pipeline.unet.device.type == "cpu"
