"""Subject masks: GrabCut by default, a learned segmenter through from_pretrained, the masked loss, and
masks that stay in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from petportrait.ml.masks import LearnedSegmenter, SegmenterError, grabcut_mask, mask_function, overlay
from petportrait.ml.photos import PhotoData, load_photo, prepare_photos
from petportrait.ml.train import (
    InvalidTrainSpec,
    denoising_loss,
    encode_prompt,
    latent_pixel_weights,
    load_train_components,
    read_lora_metadata,
    train_lora,
)

from .conftest import tiny_spec


def _ellipse_on_texture() -> tuple[Image.Image, np.ndarray]:
    """A brown ellipse (the animal) off-centre on a green, noisy background, and where the ellipse is."""
    rng = np.random.default_rng(3)
    background = np.clip(rng.normal((60, 140, 60), 18, size=(240, 320, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(background)
    ImageDraw.Draw(image).ellipse((120, 60, 250, 200), fill=(170, 110, 60))
    truth = Image.new("L", image.size, 0)
    ImageDraw.Draw(truth).ellipse((120, 60, 250, 200), fill=255)
    return image, np.asarray(truth) > 127


def test_grabcut_finds_the_animal_and_leaves_out_the_background() -> None:
    image, truth = _ellipse_on_texture()
    mask = grabcut_mask(image)
    found = np.asarray(mask.resize(image.size)) > 127
    iou = (found & truth).sum() / (found | truth).sum()
    assert iou > 0.85, f"the mask matches the animal with IoU {iou:.2f} only"


def test_the_default_mask_of_a_real_cat_covers_the_cat_not_the_corners(cat_photos: list[Path]) -> None:
    image = load_photo(cat_photos[4])  # the cat sits in the middle, the garden around it
    mask = np.asarray(grabcut_mask(image), dtype=np.float32) / 255
    height, width = mask.shape
    assert mask[height // 2, width // 2] > 0.5
    assert max(mask[0, 0], mask[0, -1], mask[-1, 0], mask[-1, -1]) == 0
    assert 0.1 < mask.mean() < 0.6


def test_the_mask_chooses_the_crop() -> None:
    image, _ = _ellipse_on_texture()  # the ellipse sits right of the middle of a landscape photo
    data = PhotoData("wide", _png(image))
    plain, masked = prepare_photos([data, data], resolution=64, mask_makers=[None, grabcut_mask])
    assert plain.mask is None and masked.mask is not None and masked.mask.shape == (64, 64)
    assert masked.crop.left > 0 and masked.crop.right > 250  # slid right to hold the whole animal


def _png(image: Image.Image) -> bytes:
    import io

    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def loss_parts(
    preview_model: Path,
) -> tuple[object, object, torch.Tensor, torch.Tensor, torch.Tensor, object]:
    parts = load_train_components(str(preview_model), family="sd15")
    generator = torch.Generator().manual_seed(5)
    latents = torch.randn((2, 4, 8, 8), generator=generator)
    noise = torch.randn(latents.shape, generator=generator)
    timesteps = torch.tensor([100, 700])
    prompt = encode_prompt(parts, "a photo of sks cat", device="cpu")
    return parts.unet, parts.noise_scheduler, latents, noise, timesteps, prompt


def test_background_pixels_give_no_gradient_at_background_weight_zero(loss_parts: tuple) -> None:
    unet, scheduler, latents, noise, timesteps, prompt = loss_parts
    mask = torch.zeros((2, 1, 64, 64))
    mask[:, :, 16:48, 8:40] = 1.0  # the animal; the rest is background
    photos_mask = [_prepared(m[0].numpy()) for m in mask]
    weights = latent_pixel_weights(photos_mask, latent_size=(8, 8), background_weight=0.0)
    assert weights is not None and weights.shape == (2, 1, 8, 8)
    captured: list[torch.Tensor] = []

    def keep_output(module: torch.nn.Module, args: object, output: object) -> None:
        sample = output.sample  # type: ignore[attr-defined]
        sample.retain_grad()
        captured.append(sample)

    unet.requires_grad_(True)
    handle = unet.register_forward_hook(keep_output)
    try:
        loss = denoising_loss(unet, scheduler, latents, noise, timesteps, prompt, pixel_weights=weights)
        loss.sum().backward()
    finally:
        handle.remove()
        unet.zero_grad(set_to_none=True)
        unet.requires_grad_(False)
    grad = captured[0].grad
    assert grad is not None
    background = (weights == 0).expand_as(grad)
    assert background.any() and torch.count_nonzero(grad[background]) == 0
    assert torch.count_nonzero(grad[~background]) > 0


def test_an_all_ones_mask_gives_exactly_the_plain_loss(loss_parts: tuple) -> None:
    unet, scheduler, latents, noise, timesteps, prompt = loss_parts
    photos = [_prepared(np.ones((64, 64), np.float32)) for _ in range(2)]
    weights = latent_pixel_weights(photos, latent_size=(8, 8), background_weight=0.1)
    assert weights is not None and torch.all(weights == 1)
    with torch.no_grad():
        plain = denoising_loss(unet, scheduler, latents, noise, timesteps, prompt, snr_gamma=5.0)
        masked = denoising_loss(
            unet, scheduler, latents, noise, timesteps, prompt, snr_gamma=5.0, pixel_weights=weights
        )
    assert torch.equal(plain, masked)


def test_the_background_weight_sets_the_background_pixels_weight() -> None:
    mask = np.zeros((64, 64), np.float32)
    mask[:, 32:] = 1.0
    unmasked = _prepared(None)
    weights = latent_pixel_weights([_prepared(mask), unmasked], latent_size=(8, 8), background_weight=0.1)
    assert weights is not None
    assert torch.allclose(weights[0, 0, :, :4], torch.tensor(0.1)) and torch.all(weights[0, 0, :, 4:] == 1)
    assert torch.all(weights[1] == 1)  # a photo with masking off weighs 1 everywhere
    assert latent_pixel_weights([unmasked], latent_size=(8, 8), background_weight=0.1) is None


def _prepared(mask: np.ndarray | None) -> object:
    from petportrait.ml.photos import CropBox, PreparedPhoto

    return PreparedPhoto("p", "0" * 64, CropBox(0, 0, 64, 64), Image.new("RGB", (64, 64)), mask=mask)


def _tiny_segmenter(folder: Path) -> Path:
    """A tiny random SegFormer with a background and a dog class, saved with save_pretrained."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    torch.manual_seed(0)
    config = SegformerConfig(
        num_channels=3,
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        num_attention_heads=[1, 2],
        patch_sizes=[7, 3],
        strides=[4, 2],
        mlp_ratios=[2, 2],
        decoder_hidden_size=16,
        num_labels=2,
        id2label={0: "background", 1: "dog"},
        label2id={"background": 0, "dog": 1},
    )
    SegformerForSemanticSegmentation(config).save_pretrained(folder)
    SegformerImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)
    return folder


def test_a_configured_segmenter_is_loaded_with_from_pretrained_and_makes_the_mask(tmp_path: Path) -> None:
    folder = _tiny_segmenter(tmp_path / "segmenter")
    make_mask = mask_function(str(folder))
    assert isinstance(make_mask, LearnedSegmenter) and make_mask.animal_ids == [1]
    image, _ = _ellipse_on_texture()
    mask = make_mask(image)
    assert mask.mode == "L" and max(mask.size) == 256 and mask.size[0] > mask.size[1]
    values = np.asarray(mask)
    assert values.min() < values.max()  # a random model still gives a per-pixel probability
    assert overlay(image, mask, side=128).size == (128, 96)


def test_a_segmenter_that_cannot_be_loaded_is_refused_clearly(tmp_path: Path, preview_model: Path) -> None:
    with pytest.raises(SegmenterError, match="PETPORTRAIT__ML__SEGMENTER"):
        mask_function(str(tmp_path / "nothing-here"))
    spec = tiny_spec(
        preview_model,
        [b"x", b"y"],
        None,
        mask_background_weight=0.1,
        segmenter=str(tmp_path / "nothing-here"),
    )
    with pytest.raises(InvalidTrainSpec, match="segmenter"):
        train_lora(spec)
    with pytest.raises(InvalidTrainSpec, match="mask_background_weight"):
        train_lora(tiny_spec(preview_model, [b"x", b"y"], None, mask_background_weight=1.5))


def test_masked_training_keeps_masks_in_memory_and_honours_the_per_photo_switch(
    preview_model: Path,
    cat_photos: list[Path],
    tmp_path: Path,
    work_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    photos = [PhotoData(f"photo-{i}", p.read_bytes()) for i, p in enumerate(cat_photos[:3])]
    masked = train_lora(
        tiny_spec(
            preview_model, photos, None, steps=2, mask_background_weight=0.1, masked=[True, False, True]
        )
    )
    assert masked.path is None and sorted(tmp_path.rglob("*")) == before  # nothing written, not even temp
    assert list(work_dir.iterdir()) == []
    assert read_lora_metadata(masked.data)["masked_photos"] == "2"
    assert masked.metadata["mask_background_weight"] == "0.1"
    assert masked.final_loss > 0
