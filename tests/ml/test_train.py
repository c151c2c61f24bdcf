"""DreamBooth-LoRA training on the preview model, with the real pet photos."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from petportrait.ml.models import ModelLoadError
from petportrait.ml.photos import file_sha256, images_to_tensor, prepare_photos
from petportrait.ml.train import (
    InvalidTrainSpec,
    TrainedLora,
    TrainingCancelled,
    TrainProgress,
    denoising_loss,
    encode_images,
    encode_prompt,
    load_train_components,
    merge_lora_in_forward,
    read_lora_metadata,
    train_lora,
)

from .conftest import TEST_RESOLUTION, tiny_spec


def fixed_eval_loss(preview_model: Path, photos: list[Path], lora: Path | None) -> float:
    """Mean loss of the preview UNet (with ``lora`` loaded by diffusers) on fixed noise and timesteps."""
    from diffusers import StableDiffusionPipeline

    parts = load_train_components(str(preview_model), family="sd15")
    prepared = prepare_photos(photos, resolution=TEST_RESOLUTION)
    mean, _ = encode_images(parts.vae, images_to_tensor([p.image for p in prepared]), device="cpu")
    prompt = encode_prompt(parts, "a photo of sks cat", device="cpu")
    generator = torch.Generator().manual_seed(1234)
    latents = mean.repeat(4, 1, 1, 1)
    noise = torch.randn(latents.shape, generator=generator)
    timesteps = torch.randint(0, 1000, (latents.shape[0],), generator=generator)
    if lora is not None:
        pipeline = StableDiffusionPipeline(
            vae=parts.vae,
            text_encoder=parts.text_encoders[0],
            tokenizer=parts.tokenizers[0],
            unet=parts.unet,
            scheduler=parts.noise_scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipeline.load_lora_weights(str(lora), adapter_name="pet")  # diffusers' own loader reads our file
    with torch.no_grad():
        loss = denoising_loss(parts.unet, parts.noise_scheduler, latents, noise, timesteps, prompt)
    return float(loss.mean())


def test_training_learns_the_pet(preview_model: Path, cat_photos: list[Path], tmp_path: Path) -> None:
    before = fixed_eval_loss(preview_model, cat_photos, None)
    trained = train_lora(tiny_spec(preview_model, cat_photos, tmp_path / "cat.safetensors", steps=60))
    after = fixed_eval_loss(preview_model, cat_photos, trained.path)
    assert after < 0.85 * before, f"loss on fixed noise went from {before:.4f} to {after:.4f} only"
    assert trained.steps_done == 60 and math.isfinite(trained.final_loss)


def test_the_lora_file_carries_its_metadata(pet_loras: dict[str, TrainedLora], preview_model: Path) -> None:
    trained = pet_loras["dog"]
    metadata = read_lora_metadata(trained.path)
    assert metadata == trained.metadata
    assert metadata["base_model"] == str(preview_model)
    assert (metadata["token"], metadata["species"], metadata["preview"]) == ("sks", "dog", "true")
    assert (metadata["steps"], metadata["rank"], metadata["seed"]) == ("20", "4", "2")
    assert metadata["resolution"] == str(TEST_RESOLUTION)
    dog_photos = sorted((Path(p) for p in json.loads(metadata["photo_sha256"])), key=str)
    from .conftest import photos_of

    assert sorted(map(str, dog_photos)) == sorted(file_sha256(p) for p in photos_of("dog"))
    weights = load_file(str(trained.path))
    assert weights and all(k.startswith("unet.") and ".lora_" in k for k in weights)
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in weights.items())  # B starts at zero


def test_a_cpu_run_is_repeatable_bit_for_bit(
    preview_model: Path, cat_photos: list[Path], tmp_path: Path
) -> None:
    first = train_lora(tiny_spec(preview_model, cat_photos, tmp_path / "a.safetensors", steps=5))
    second = train_lora(tiny_spec(preview_model, cat_photos, tmp_path / "b.safetensors", steps=5))
    other_seed = train_lora(tiny_spec(preview_model, cat_photos, tmp_path / "c.safetensors", steps=5, seed=8))
    # (The files' bytes can differ: safetensors writes its metadata map in no fixed order.)
    a, b, c = (load_file(str(t.path)) for t in (first, second, other_seed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert read_lora_metadata(first.path) == read_lora_metadata(second.path)
    assert first.final_loss == second.final_loss
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_progress_is_reported_after_every_step(
    preview_model: Path, cat_photos: list[Path], tmp_path: Path
) -> None:
    updates: list[TrainProgress] = []
    train_lora(
        tiny_spec(preview_model, cat_photos, tmp_path / "p.safetensors", steps=4), progress=updates.append
    )
    assert [u.step for u in updates] == [1, 2, 3, 4]
    assert all(u.total == 4 and math.isfinite(u.loss) and u.eta_seconds >= 0 for u in updates)
    assert updates[-1].eta_seconds == 0


def test_cancellation_stops_within_one_step_and_leaves_nothing(
    preview_model: Path, cat_photos: list[Path], tmp_path: Path, work_dir: Path
) -> None:
    steps_seen: list[int] = []
    output = tmp_path / "cancelled.safetensors"
    spec = tiny_spec(preview_model, cat_photos, output, steps=50)
    with pytest.raises(TrainingCancelled) as caught:
        train_lora(
            spec, progress=lambda p: steps_seen.append(p.step), should_stop=lambda: len(steps_seen) >= 3
        )
    assert caught.value.steps_done == 3 and steps_seen == [1, 2, 3]
    assert list(work_dir.iterdir()) == []
    assert not output.exists() and list(tmp_path.glob("*.safetensors")) == []


def test_in_memory_photos_give_the_same_lora_as_bytes_and_write_nothing(
    preview_model: Path, cat_photos: list[Path], tmp_path: Path, work_dir: Path
) -> None:
    from safetensors.torch import load as safetensors_load

    from petportrait.ml.photos import PhotoData

    on_disk = train_lora(tiny_spec(preview_model, cat_photos, tmp_path / "file.safetensors", steps=3))
    before = sorted(tmp_path.rglob("*"))
    in_memory = [PhotoData(f"photo-{i}", p.read_bytes()) for i, p in enumerate(cat_photos)]
    trained = train_lora(tiny_spec(preview_model, in_memory, None, steps=3))
    assert trained.path is None
    # the same weights and metadata (safetensors may order the header's metadata differently per call)
    ours, theirs = safetensors_load(trained.data), safetensors_load(on_disk.data)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert on_disk.path is not None and on_disk.path.read_bytes() == on_disk.data
    assert read_lora_metadata(trained.data) == trained.metadata
    assert sorted(tmp_path.rglob("*")) == before  # no file, not even in the temporary folder


def test_a_failure_mid_run_leaves_no_work_folder(
    preview_model: Path, cat_photos: list[Path], tmp_path: Path, work_dir: Path
) -> None:
    def explode(update: TrainProgress) -> None:
        raise RuntimeError("the progress sink broke")

    with pytest.raises(RuntimeError, match="sink broke"):
        train_lora(
            tiny_spec(preview_model, cat_photos, tmp_path / "x.safetensors"),
            progress=explode,
        )
    assert list(work_dir.iterdir()) == []


def test_prior_preservation_trains_with_class_images_from_the_base_model(
    preview_model: Path, dog_photos: list[Path], tmp_path: Path, work_dir: Path
) -> None:
    spec = tiny_spec(
        preview_model,
        dog_photos,
        tmp_path / "prior.safetensors",
        species="dog",
        steps=3,
        prior_preservation=True,
        num_class_images=2,
    )
    trained = train_lora(spec)
    assert trained.metadata["prior_preservation"] == "true" and trained.path.is_file()
    assert list(work_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"photos": []}, "no photos"),
        ({"photos": "ONE"}, "1 photo"),
        ({"photos": "UNREADABLE"}, "cannot read the photo garbage.jpg"),
        ({"photos": "MISSING"}, "does not exist"),
        ({"species": "dragon"}, "unknown species 'dragon'"),
        ({"resolution": 100}, "multiple of 8"),
        ({"token": "my pet"}, "token"),
        ({"token": "dog"}, "species word"),
        ({"steps": 0}, "steps must be at least 1"),
        ({"rank": 0}, "rank must be at least 1"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"batch_size": 0}, "batch_size"),
        ({"output_path": "OUT.bin"}, ".safetensors"),
        ({"mixed_precision": "bf16"}, "only used on CUDA"),
        ({"use_8bit_adam": True}, "CUDA"),
        ({"crop_boxes": [None]}, "crop boxes"),
    ],
)
def test_a_bad_spec_is_refused_with_a_clear_error(
    preview_model: Path,
    cat_photos: list[Path],
    tmp_path: Path,
    work_dir: Path,
    change: dict[str, object],
    words: str,
) -> None:
    values = dict(change)
    if values.get("photos") == "ONE":
        values["photos"] = cat_photos[:1]
    elif values.get("photos") == "UNREADABLE":
        garbage = tmp_path / "garbage.jpg"
        garbage.write_bytes(b"this is not a jpeg")
        values["photos"] = [*cat_photos[:2], garbage]
    elif values.get("photos") == "MISSING":
        values["photos"] = [*cat_photos[:2], tmp_path / "gone.jpg"]
    if values.get("output_path") == "OUT.bin":
        values["output_path"] = tmp_path / "out.bin"
    output = tmp_path / "bad.safetensors"
    photos = values.pop("photos", cat_photos)
    spec = tiny_spec(preview_model, photos, output, **values)  # type: ignore[arg-type]
    with pytest.raises(InvalidTrainSpec, match=words.replace(".", r"\.").replace("(", r"\(")):
        train_lora(spec)
    assert isinstance(InvalidTrainSpec(""), ValueError)
    assert list(work_dir.iterdir()) == [] and not output.exists()


def test_a_base_model_that_is_not_there_is_a_model_load_error(cat_photos: list[Path], tmp_path: Path) -> None:
    spec = tiny_spec(tmp_path / "no-such-model", cat_photos, tmp_path / "x.safetensors")
    with pytest.raises(ModelLoadError, match="PETPORTRAIT__ML__BASE_MODEL"):
        train_lora(spec)


def test_unset_hyper_parameters_take_the_family_defaults(
    preview_model: Path, cat_photos: list[Path], tmp_path: Path
) -> None:
    from petportrait.ml.train import FAMILY_DEFAULTS, TrainSpec, check_spec

    spec = TrainSpec(
        base_model=str(preview_model),
        photos=cat_photos,
        species="cat",
        output_path=tmp_path / "x.safetensors",
    )
    resolved = check_spec(spec)
    preview = FAMILY_DEFAULTS["preview"]
    assert resolved.is_preview and resolved.family == "sd15"
    assert (resolved.resolution, resolved.steps, resolved.rank, resolved.learning_rate) == (
        256,
        preview.steps,
        preview.rank,
        preview.learning_rate,
    )
    assert resolved.instance_prompt == "a photo of sks cat" and resolved.class_prompt == "a photo of cat"
    assert resolved.mixed_precision == "no"
    assert FAMILY_DEFAULTS["sd15"].resolution == 512 and FAMILY_DEFAULTS["sdxl"].resolution == 1024


def _lora_stack(dtype: torch.dtype) -> torch.nn.Module:
    """Two linear layers (one with a bias) under peft LoRA adapters with a non-zero B, as after training."""
    from peft import LoraConfig, inject_adapter_in_model

    torch.manual_seed(7)
    model = torch.nn.Sequential()
    model.add_module("to_q", torch.nn.Linear(16, 24, bias=False))
    model.add_module("to_out", torch.nn.Linear(24, 16))
    model.requires_grad_(False)
    model = inject_adapter_in_model(LoraConfig(r=4, lora_alpha=8, target_modules=["to_q", "to_out"]), model)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            parameter.data.normal_(0, 0.1)
    return model.to(dtype)


def _output_and_lora_grads(
    model: torch.nn.Module, x: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    output = model(x)
    output.square().sum().backward()
    grads = [
        p.grad.clone() for _, p in sorted(model.named_parameters()) if p.requires_grad and p.grad is not None
    ]
    model.zero_grad()
    return output.detach(), grads


def test_merged_lora_layers_compute_what_peft_computes() -> None:
    x = torch.randn(3, 10, 16, generator=torch.Generator().manual_seed(1))
    model = _lora_stack(torch.float32)
    expected, expected_grads = _output_and_lora_grads(model, x)
    assert merge_lora_in_forward(model) == 2
    output, grads = _output_and_lora_grads(model, x)

    assert len(grads) == len(expected_grads) == 4  # A and B of both layers receive gradients
    torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-5)
    for grad, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, want, rtol=1e-4, atol=1e-5)
    # The adapters are untouched: what is saved is peft's own state.
    assert {name for name, _ in model.named_parameters() if "lora_" in name} == {
        "to_q.lora_A.default.weight",
        "to_q.lora_B.default.weight",
        "to_out.lora_A.default.weight",
        "to_out.lora_B.default.weight",
    }


def test_half_precision_lora_layers_keep_peft_forward() -> None:
    model = _lora_stack(torch.bfloat16)
    assert merge_lora_in_forward(model) == 0
