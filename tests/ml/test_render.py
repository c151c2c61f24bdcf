"""Rendering on the preview model: one pipeline kept, a pet's LoRA per request, reproducible, marked."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from petportrait.ml.render import (
    InvalidRenderRequest,
    LoadedLora,
    Renderer,
    RenderRequest,
    build_prompts,
    mark_preview,
)
from petportrait.ml.styles import UnknownStyle, get_style
from petportrait.ml.train import TrainedLora

SIZE = 64


def request(**overrides: object) -> RenderRequest:
    values: dict[str, object] = {
        "species": "cat",
        "style": "oil_painting",
        "seed": 11,
        "width": SIZE,
        "height": SIZE,
        "steps": 6,
    }
    values.update(overrides)
    return RenderRequest(**values)  # type: ignore[arg-type]


def array(image: object) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_the_same_seed_gives_the_same_image_twice(renderer: Renderer) -> None:
    first = renderer.render(request())
    second = renderer.render(request())
    assert first.images[0].tobytes() == second.images[0].tobytes()
    assert renderer.render(request(seed=12)).images[0].tobytes() != first.images[0].tobytes()


def test_a_pet_lora_changes_the_image_and_leaves_nothing_behind(
    renderer: Renderer, pet_loras: dict[str, TrainedLora]
) -> None:
    cat = pet_loras["cat"].path
    base_before = renderer.render(request())
    with_lora = renderer.render(request(lora_path=cat))
    base_after = renderer.render(request())
    assert np.abs(array(with_lora.images[0]) - array(base_before.images[0])).mean() > 1.0
    assert base_after.images[0].tobytes() == base_before.images[0].tobytes()


def test_switching_between_two_pets_gives_each_its_own_image(
    renderer: Renderer, pet_loras: dict[str, TrainedLora]
) -> None:
    cat, dog = pet_loras["cat"].path, pet_loras["dog"].path
    first_cat = renderer.render(request(lora_path=cat))
    dog_image = renderer.render(request(lora_path=dog, species="dog"))
    second_cat = renderer.render(request(lora_path=cat))
    assert first_cat.images[0].tobytes() == second_cat.images[0].tobytes()
    assert first_cat.params["lora_sha256"] != dog_image.params["lora_sha256"]


def test_the_lora_is_applied_as_diffusers_would_apply_it(
    renderer: Renderer, pet_loras: dict[str, TrainedLora], preview_model: Path
) -> None:
    from diffusers import DPMSolverMultistepScheduler

    from petportrait.ml.models import load_pipeline

    ours = renderer.render(request(lora_path=pet_loras["cat"].path))
    pipeline = load_pipeline(str(preview_model), device="cpu", dtype=torch.float32)
    pipeline.scheduler = DPMSolverMultistepScheduler.from_config(
        pipeline.scheduler.config, algorithm_type="dpmsolver++", solver_order=2
    )
    pipeline.load_lora_weights(str(pet_loras["cat"].path), adapter_name="cat")
    theirs = pipeline(
        prompt=ours.params["prompt"],
        negative_prompt=ours.params["negative_prompt"],
        width=SIZE,
        height=SIZE,
        num_inference_steps=6,
        guidance_scale=7.5,
        generator=[torch.Generator("cpu").manual_seed(11)],
    ).images[0]
    unmarked_rows = SIZE - max(12, SIZE // 8)  # the preview band is ours alone
    difference = np.abs(array(ours.images[0]) - array(theirs))[:unmarked_rows]
    assert difference.max() <= 2


def test_the_params_hold_everything_needed_to_render_again(
    renderer: Renderer, pet_loras: dict[str, TrainedLora], preview_model: Path
) -> None:
    lora = pet_loras["cat"].path
    result = renderer.render(request(lora_path=lora, count=2, seed=40, guidance=6.0))
    params = result.params
    json.dumps(params, allow_nan=False)  # storable as plain JSON
    assert len(result.images) == 2
    assert params["model"] == str(preview_model) and params["preview"] is True and result.is_preview
    assert params["prompt"] == get_style("oil_painting").format("sks cat")
    assert params["negative_prompt"] == get_style("oil_painting").negative_prompt
    assert params["seeds"] == [40, 41]
    assert (params["steps"], params["guidance"], params["width"], params["height"]) == (6, 6.0, SIZE, SIZE)
    assert params["scheduler"] == "DPMSolverMultistepScheduler"
    assert params["scheduler_config"]["algorithm_type"] == "dpmsolver++"
    assert params["lora_sha256"] == hashlib.sha256(lora.read_bytes()).hexdigest()
    # The second image is the first image of a render seeded with its own seed.
    again = renderer.render(request(lora_path=lora, seed=41, guidance=6.0))
    assert np.abs(array(again.images[0]) - array(result.images[1])).max() <= 2


def test_preview_images_are_visibly_marked(renderer: Renderer) -> None:
    image = renderer.render(request()).images[0]
    band = np.asarray(image)[-8:].reshape(-1, 3).astype(int)
    red_or_yellow = ((band[:, 0] > 180) & (band[:, 2] < 60)).mean()
    assert red_or_yellow > 0.5
    top = np.asarray(image)[:8].reshape(-1, 3).astype(int)
    assert ((top[:, 0] > 180) & (top[:, 2] < 60)).mean() < 0.5
    from PIL import Image

    plain = Image.new("RGB", (256, 256), (0, 128, 255))
    assert mark_preview(plain).tobytes() != plain.tobytes()


def test_prompts_come_from_a_style_or_free_text_with_the_pet() -> None:
    styled, negative = build_prompts(RenderRequest(species="dog", style="astronaut"))
    assert (
        styled == get_style("astronaut").format("sks dog")
        and negative == get_style("astronaut").negative_prompt
    )
    placed, _ = build_prompts(RenderRequest(species="rabbit", prompt="{subject} in a teacup"))
    assert placed == "sks rabbit in a teacup"
    prefixed, _ = build_prompts(RenderRequest(species="other", prompt="on a beach at sunset"))
    assert prefixed == "sks pet, on a beach at sunset"
    both, _ = build_prompts(RenderRequest(species="cat", style="anime", prompt="wearing a scarf"))
    assert both.startswith(get_style("anime").format("sks cat")) and both.endswith("wearing a scarf")
    _, mine = build_prompts(RenderRequest(species="cat", style="anime", negative_prompt="hats"))
    assert mine == "hats"


def test_a_lora_for_another_pet_token_is_refused(
    renderer: Renderer, pet_loras: dict[str, TrainedLora]
) -> None:
    with pytest.raises(InvalidRenderRequest, match="species"):
        renderer.render(request(lora_path=pet_loras["dog"].path, species="cat"))
    with pytest.raises(InvalidRenderRequest, match="token"):
        renderer.render(request(lora_path=pet_loras["dog"].path, species="dog", token="zwx"))


def test_a_lora_that_does_not_fit_the_model_is_refused(
    renderer: Renderer, pet_loras: dict[str, TrainedLora], tmp_path: Path
) -> None:
    weights = load_file(str(pet_loras["cat"].path))
    key = next(k for k in weights if k.endswith("lora_A.weight"))
    weights[key] = torch.zeros(4, 3)
    bad = tmp_path / "bad.safetensors"
    save_file(weights, str(bad))
    with pytest.raises(InvalidRenderRequest, match="does not fit"):
        renderer.render(request(lora_path=bad))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(InvalidRenderRequest, match="cannot be read"):
        renderer.render(request(lora_path=garbage))


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        ({"style": "cubism"}, UnknownStyle, "unknown style"),
        ({"style": None}, InvalidRenderRequest, "style or a prompt"),
        ({"species": "dragon"}, InvalidRenderRequest, "unknown species"),
        ({"width": 100}, InvalidRenderRequest, "multiple of 8"),
        ({"height": 4096}, InvalidRenderRequest, "multiple of 8"),
        ({"count": 0}, InvalidRenderRequest, "count"),
        ({"steps": 0}, InvalidRenderRequest, "steps"),
        ({"guidance": float("nan")}, InvalidRenderRequest, "guidance"),
        ({"lora_path": Path("/nonexistent/pet.safetensors")}, InvalidRenderRequest, "does not exist"),
    ],
)
def test_a_bad_request_is_refused_with_a_clear_error(
    renderer: Renderer, change: dict[str, object], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        renderer.render(request(**change))


def test_the_default_size_is_the_model_native_resolution(renderer: Renderer) -> None:
    assert renderer.native_size == 256
    result = renderer.render(RenderRequest(species="dog", style="pixel_art", steps=2))
    assert result.images[0].size == (256, 256)


def test_a_lora_in_memory_renders_as_its_file_does_and_the_renderer_keeps_no_weights(
    renderer: Renderer, pet_loras: dict[str, TrainedLora]
) -> None:
    cat = pet_loras["cat"]
    from_file = renderer.render(request(lora_path=cat.path))
    from_bytes = renderer.render(request(lora=cat.data))
    read_once = renderer.load_lora(cat.data)
    from_loaded = renderer.render(request(lora=read_once))
    assert from_bytes.images[0].tobytes() == from_file.images[0].tobytes()
    assert from_loaded.images[0].tobytes() == from_file.images[0].tobytes()
    assert from_bytes.params["lora_sha256"] == hashlib.sha256(cat.data).hexdigest()
    # nothing of a LoRA stays in a long-lived renderer once its request ended (no cache to outlive a model)
    held = [value for value in vars(renderer).values() if isinstance(value, LoadedLora | dict | list)]
    assert not any(isinstance(value, LoadedLora) for value in held)
    assert all(
        not isinstance(v, LoadedLora) for value in held if isinstance(value, dict) for v in value.values()
    )
    with pytest.raises(InvalidRenderRequest, match="cannot be read"):
        renderer.render(request(lora=b"not a safetensors file"))
    with pytest.raises(InvalidRenderRequest, match="not both"):
        renderer.render(request(lora=cat.data, lora_path=cat.path))
