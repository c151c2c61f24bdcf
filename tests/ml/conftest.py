"""Fixtures of the portrait engine's tests: the preview model built once, real pet photos, tiny LoRAs."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import torch

from petportrait.ml.photos import PhotoSource
from petportrait.ml.preview import ensure_preview_model
from petportrait.ml.render import Renderer
from petportrait.ml.train import TrainedLora, TrainSpec, train_lora

PETS = Path(__file__).resolve().parents[3] / "shared" / "data" / "dreambooth-pets"
TEST_RESOLUTION = 64  # tiny, so that the whole suite runs in minutes on two CPU cores


def photos_of(name: str) -> list[Path]:
    """The real photos of one pet of the DreamBooth data set, in name order."""
    folder = PETS / name
    if not folder.is_dir():
        pytest.skip(f"test photos missing: {folder}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def preview_model(models_dir: Path) -> Path:
    """The preview model, built once per session into a temporary models folder."""
    return ensure_preview_model(models_dir)


@pytest.fixture
def cat_photos() -> list[Path]:
    return photos_of("cat")


@pytest.fixture
def dog_photos() -> list[Path]:
    return photos_of("dog")


def tiny_spec(
    preview_model: Path, photos: Sequence[PhotoSource], output: Path | None, **overrides: object
) -> TrainSpec:
    """A training spec on the preview model small enough for a test: 64 px, a few steps."""
    values: dict[str, object] = {
        "base_model": str(preview_model),
        "photos": photos,
        "species": "cat",
        "output_path": output,
        "resolution": TEST_RESOLUTION,
        "steps": 6,
        "seed": 7,
        "device": "cpu",
    }
    values.update(overrides)
    return TrainSpec(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pet_loras(preview_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, TrainedLora]:
    """Two LoRAs on the preview model, a cat's and a dog's, trained once per session."""
    folder = tmp_path_factory.mktemp("loras")
    return {
        "cat": train_lora(
            tiny_spec(preview_model, photos_of("cat"), folder / "cat.safetensors", steps=20, seed=1)
        ),
        "dog": train_lora(
            tiny_spec(
                preview_model, photos_of("dog"), folder / "dog.safetensors", species="dog", steps=20, seed=2
            )
        ),
    }


@pytest.fixture(scope="session")
def renderer(preview_model: Path) -> Renderer:
    """One renderer on the preview model for the whole session, as the service keeps one."""
    return Renderer(str(preview_model), "cpu")


@pytest.fixture
def work_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The system's temporary folder during the test: training must leave (and write) nothing there."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.setenv("TMPDIR", str(folder))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def build_tiny_sdxl(folder: Path, tokenizer_source: Path) -> Path:
    """A tiny random SDXL-architecture pipeline saved with ``save_pretrained`` (two text encoders)."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_source)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,  # 6 size ids * 8 + 32 pooled
        cross_attention_dim=64,
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        sample_size=64,
    )
    config = CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=5,
        vocab_size=len(tokenizer),
        projection_dim=32,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
        steps_offset=1,
    )
    pipeline = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(config),
        text_encoder_2=CLIPTextModelWithProjection(config),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
    )
    pipeline.save_pretrained(folder)
    return folder
