"""DreamBooth-LoRA training of a pet on a diffusers base model: photos in, LoRA weights out.

``train_lora`` is the recipe, to be read top to bottom. It follows diffusers'
``examples/dreambooth/train_dreambooth_lora.py`` (instance prompt with a rare token and the species, optional
prior preservation, LoRA on the UNet attention projections, AdamW, min-SNR weighting) with one change that
makes it faster: the VAE latents of the photos and the text embeddings of the prompts never change during a
run, so they are computed once, before the first step, and the VAE and text encoders are then freed. In
float32 (on the CPU) two more things save time without changing the arithmetic's precision: each LoRA layer
multiplies by its merged weight ``W + s·B·A`` (one matrix product where peft's layer does three, and no
separate add; ``merge_lora_in_forward``), and AdamW and gradient clipping run fused over all parameters
rather than one tensor at a time.

Photos may be given in memory (``PhotoData``), and everything derived from them (crops, cached latents,
class latents, the LoRA itself) stays in memory: ``train_lora`` returns the LoRA as safetensors bytes and
writes a file only where the caller names one (``output_path``, for the command line and benchmarks).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F

from petportrait.ml.masks import SegmenterError, mask_function
from petportrait.ml.models import Family, family_of, load_component
from petportrait.ml.photos import (
    CropBox,
    MaskMaker,
    PhotoError,
    PhotoSource,
    PreparedPhoto,
    images_to_tensor,
    prepare_photos,
)
from petportrait.ml.preview import PREVIEW_RESOLUTION, is_preview_model

SPECIES = ("dog", "cat", "rabbit", "bird", "other")
# The word a prompt uses for each species; "other" pets are called a pet.
CLASS_NOUNS = {"dog": "dog", "cat": "cat", "rabbit": "rabbit", "bird": "bird", "other": "pet"}
DEFAULT_TOKEN = "sks"
MIN_PHOTOS = 2
LORA_TARGET_MODULES = ("to_k", "to_q", "to_v", "to_out.0")
LORA_FORMAT = "petportrait-lora/1"
# Devices where torch's AdamW has a fused kernel (one pass over all parameters).
FUSED_ADAMW_DEVICES = frozenset({"cpu", "cuda"})
METADATA_PREFIX = "petportrait."


class InvalidTrainSpec(ValueError):
    """A training request that cannot be run as given; the message says what is wrong."""


class TrainingCancelled(Exception):
    """Training stopped because ``should_stop`` said so; nothing was written."""

    def __init__(self, steps_done: int) -> None:
        super().__init__(f"training was cancelled after {steps_done} steps")
        self.steps_done = steps_done


@dataclass(frozen=True)
class FamilyDefaults:
    """Hyper-parameters used when a TrainSpec leaves them unset."""

    resolution: int
    steps: int
    rank: int
    alpha: int
    learning_rate: float
    num_class_images: int


# The SD 1.5 and SDXL values are those of diffusers' DreamBooth-LoRA examples. The preview model has random
# weights and a tiny UNet: a few dozen steps at a high rate are enough to show that training works.
FAMILY_DEFAULTS: dict[str, FamilyDefaults] = {
    "preview": FamilyDefaults(PREVIEW_RESOLUTION, 60, 4, 4, 1e-2, 4),
    "sd15": FamilyDefaults(512, 500, 16, 16, 1e-4, 50),
    "sdxl": FamilyDefaults(1024, 500, 16, 16, 1e-4, 50),
}


@dataclass(frozen=True, kw_only=True)
class TrainSpec:
    """What to train. Unset hyper-parameters take the base model family's defaults (FAMILY_DEFAULTS)."""

    base_model: str  # hub id or folder
    photos: Sequence[PhotoSource]  # paths, or in memory (PhotoData / bytes)
    species: str
    output_path: Path | None = None  # also write the .safetensors file here (else the LoRA stays in memory)
    token: str = DEFAULT_TOKEN
    steps: int | None = None
    rank: int | None = None
    alpha: int | None = None
    learning_rate: float | None = None
    resolution: int | None = None
    batch_size: int = 1
    seed: int = 0
    prior_preservation: bool = False
    num_class_images: int | None = None
    prior_loss_weight: float = 1.0
    snr_gamma: float | None = 5.0  # min-SNR weighting; None for the plain MSE loss
    device: str = "cpu"
    mixed_precision: Literal["no", "bf16"] | None = None  # None: bf16 on CUDA, no elsewhere
    gradient_checkpointing: bool = False
    use_8bit_adam: bool = False  # needs bitsandbytes and CUDA
    crop_boxes: Sequence[CropBox | None] | None = None  # one per photo; None entries are cropped by saliency
    hflip: bool = False  # add mirror images (off: a pet's markings are asymmetric)
    # Subject masks: None trains with the plain loss; a number is the loss weight of background pixels (0 to
    # 1; the animal's pixels weigh 1), and each photo's mask (made in memory) also chooses its crop.
    mask_background_weight: float | None = None
    masked: Sequence[bool] | None = None  # one per photo: False trains that photo unmasked; None: all masked
    segmenter: str | None = None  # a segmentation model's hub id or folder; None: GrabCut (no weights)


@dataclass(frozen=True)
class TrainProgress:
    """Reported after every step."""

    step: int
    total: int
    loss: float
    eta_seconds: float


@dataclass(frozen=True)
class TrainedLora:
    """The result: the LoRA as safetensors bytes (and the file, if one was asked), its metadata, and how
    training ended."""

    data: bytes = field(repr=False)
    path: Path | None
    metadata: dict[str, str]
    final_loss: float
    steps_done: int
    seconds: float = 0.0


@dataclass
class TrainComponents:
    """The base model's parts that training uses; SDXL has two tokenizers and text encoders."""

    family: Family
    tokenizers: list[Any]
    text_encoders: list[Any]
    vae: Any
    unet: Any
    noise_scheduler: Any


@dataclass(frozen=True)
class PromptEmbedding:
    """A prompt encoded for the UNet: hidden states (1, tokens, dim) and, for SDXL, the pooled embedding."""

    hidden_states: torch.Tensor
    pooled: torch.Tensor | None = None


ProgressCallback = Callable[[TrainProgress], None]
StopCallback = Callable[[], bool]


# ----------------------------------------------------------------------------------------------------------
# Checking a spec


def native_resolution(source: str, family: Family) -> int:
    """The resolution a model was made for: UNet sample size times VAE downsampling, else the family's."""
    folder = Path(source)
    try:
        unet_config = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
        vae_config = json.loads((folder / "vae" / "config.json").read_text(encoding="utf-8"))
        return int(unet_config["sample_size"]) * 2 ** (len(vae_config["block_out_channels"]) - 1)
    except (OSError, ValueError, KeyError, TypeError):
        return FAMILY_DEFAULTS[family].resolution


@dataclass(frozen=True)
class ResolvedTrainSpec:
    """A checked TrainSpec with every default filled in."""

    spec: TrainSpec
    family: Family
    is_preview: bool
    resolution: int
    steps: int
    rank: int
    alpha: int
    learning_rate: float
    num_class_images: int
    mixed_precision: Literal["no", "bf16"]
    instance_prompt: str
    class_prompt: str


def check_spec(spec: TrainSpec) -> ResolvedTrainSpec:
    """Check ``spec`` without loading anything heavy; raise InvalidTrainSpec saying what is wrong."""
    if spec.species not in SPECIES:
        raise InvalidTrainSpec(f"unknown species {spec.species!r}; it must be one of {', '.join(SPECIES)}")
    if not re.fullmatch(r"[a-z0-9]{2,16}", spec.token):
        raise InvalidTrainSpec(
            f"the token {spec.token!r} must be 2 to 16 lower-case letters or digits "
            "(a rare word such as 'sks')"
        )
    if spec.token in CLASS_NOUNS.values():
        raise InvalidTrainSpec(f"the token {spec.token!r} is a species word; use a rare word such as 'sks'")
    if len(spec.photos) == 0:
        raise InvalidTrainSpec(f"no photos were given; at least {MIN_PHOTOS} photos of the pet are needed")
    if len(spec.photos) < MIN_PHOTOS:
        raise InvalidTrainSpec(
            f"{len(spec.photos)} photo(s) were given; at least {MIN_PHOTOS} photos of the pet are needed "
            "(5 to 20, from different angles, work best)"
        )
    for path in spec.photos:
        if isinstance(path, str | Path) and not Path(path).is_file():
            raise InvalidTrainSpec(f"the photo {path} does not exist")
    if spec.crop_boxes is not None and len(spec.crop_boxes) != len(spec.photos):
        raise InvalidTrainSpec(f"{len(spec.crop_boxes)} crop boxes were given for {len(spec.photos)} photos")
    if spec.output_path is not None and Path(spec.output_path).suffix != ".safetensors":
        raise InvalidTrainSpec(f"the output path {spec.output_path} must end in .safetensors")
    try:
        device = torch.device(spec.device)
    except RuntimeError:
        raise InvalidTrainSpec(f"unknown device {spec.device!r}") from None
    mixed_precision = spec.mixed_precision or ("bf16" if device.type == "cuda" else "no")
    if mixed_precision == "bf16" and device.type != "cuda":
        raise InvalidTrainSpec("bf16 mixed precision is only used on CUDA; on this device use 'no'")
    if spec.use_8bit_adam:
        if device.type != "cuda":
            raise InvalidTrainSpec("8-bit Adam needs a CUDA device")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise InvalidTrainSpec(
                "8-bit Adam needs the bitsandbytes package, which is not installed"
            ) from None

    family = family_of(spec.base_model)  # a model that cannot be used raises ModelLoadError
    is_preview = is_preview_model(spec.base_model)
    defaults = FAMILY_DEFAULTS["preview" if is_preview else family]
    resolution = spec.resolution or native_resolution(spec.base_model, family)
    resolved = ResolvedTrainSpec(
        spec=spec,
        family=family,
        is_preview=is_preview,
        resolution=resolution,
        steps=spec.steps if spec.steps is not None else defaults.steps,
        rank=spec.rank if spec.rank is not None else defaults.rank,
        alpha=spec.alpha if spec.alpha is not None else defaults.alpha,
        learning_rate=spec.learning_rate if spec.learning_rate is not None else defaults.learning_rate,
        num_class_images=spec.num_class_images
        if spec.num_class_images is not None
        else defaults.num_class_images,
        mixed_precision=mixed_precision,
        instance_prompt=f"a photo of {spec.token} {CLASS_NOUNS[spec.species]}",
        class_prompt=f"a photo of {CLASS_NOUNS[spec.species]}",
    )
    if resolved.resolution % 8 != 0 or resolved.resolution < 64:
        raise InvalidTrainSpec(
            f"the resolution {resolved.resolution} must be a multiple of 8 and at least 64"
        )
    for name in ("steps", "rank", "alpha", "num_class_images"):
        if getattr(resolved, name) < 1:
            raise InvalidTrainSpec(f"{name} must be at least 1, got {getattr(resolved, name)}")
    if spec.batch_size < 1:
        raise InvalidTrainSpec(f"batch_size must be at least 1, got {spec.batch_size}")
    if not (math.isfinite(resolved.learning_rate) and resolved.learning_rate > 0):
        raise InvalidTrainSpec(f"learning_rate must be a positive number, got {resolved.learning_rate}")
    if not (math.isfinite(spec.prior_loss_weight) and spec.prior_loss_weight >= 0):
        raise InvalidTrainSpec(f"prior_loss_weight must be zero or more, got {spec.prior_loss_weight}")
    if spec.snr_gamma is not None and not spec.snr_gamma > 0:
        raise InvalidTrainSpec(f"snr_gamma must be positive or None, got {spec.snr_gamma}")
    weight = spec.mask_background_weight
    if weight is not None and not (math.isfinite(weight) and 0 <= weight <= 1):
        raise InvalidTrainSpec(f"mask_background_weight must be from 0 to 1 or None, got {weight}")
    if spec.masked is not None and len(spec.masked) != len(spec.photos):
        raise InvalidTrainSpec(f"{len(spec.masked)} mask choices were given for {len(spec.photos)} photos")
    return resolved


class MemorySavers(NamedTuple):
    gradient_checkpointing: bool
    use_8bit_adam: bool


def memory_savers(family: Family, device: str) -> MemorySavers:
    """TrainSpec fields that diffusers' SDXL DreamBooth-LoRA recipe uses to fit a 16 GB card: gradient
    checkpointing, and 8-bit Adam where bitsandbytes is installed (both only for SDXL on CUDA)."""
    if family != "sdxl" or torch.device(device).type != "cuda":
        return MemorySavers(gradient_checkpointing=False, use_8bit_adam=False)
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        has_bitsandbytes = False
    else:
        has_bitsandbytes = True
    return MemorySavers(gradient_checkpointing=True, use_8bit_adam=has_bitsandbytes)


# ----------------------------------------------------------------------------------------------------------
# The pieces of the recipe


def load_train_components(source: str, *, family: Family) -> TrainComponents:
    """Tokenizers, text encoders, VAE, UNet (all float32, on the CPU) and the DDPM noise scheduler."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    tokenizers = [load_component(CLIPTokenizer, source, "tokenizer")]
    text_encoders = [load_component(CLIPTextModel, source, "text_encoder")]
    if family == "sdxl":
        tokenizers.append(load_component(CLIPTokenizer, source, "tokenizer_2"))
        text_encoders.append(load_component(CLIPTextModelWithProjection, source, "text_encoder_2"))
    return TrainComponents(
        family=family,
        tokenizers=tokenizers,
        text_encoders=text_encoders,
        vae=load_component(AutoencoderKL, source, "vae"),
        unet=load_component(UNet2DConditionModel, source, "unet"),
        noise_scheduler=load_component(DDPMScheduler, source, "scheduler"),
    )


@torch.no_grad()
def encode_prompt(components: TrainComponents, prompt: str, *, device: str) -> PromptEmbedding:
    """Encode ``prompt`` as the pipelines do: SD 1.5 last hidden state, SDXL both encoders' penultimate."""
    hidden: list[torch.Tensor] = []
    pooled: torch.Tensor | None = None
    for tokenizer, encoder in zip(components.tokenizers, components.text_encoders, strict=True):
        ids = tokenizer(
            prompt,
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(device)
        if components.family == "sdxl":
            output = encoder(ids, output_hidden_states=True)
            hidden.append(output.hidden_states[-2])
            pooled = output[0]  # the projected pooled embedding of the last encoder
        else:
            hidden.append(encoder(ids)[0])
    return PromptEmbedding(hidden_states=torch.cat(hidden, dim=-1).float(), pooled=pooled)


@torch.no_grad()
def encode_images(vae: Any, pixels: torch.Tensor, *, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The VAE posterior of each image, scaled for the UNet: (mean, std), each (N, C, h, w), float32."""
    means, stds = [], []
    for start in range(0, pixels.shape[0], 4):
        batch = pixels[start : start + 4]
        posterior = vae.encode(batch.to(device=device, dtype=vae.dtype)).latent_dist
        means.append(posterior.mean.float())
        stds.append(posterior.std.float())
    shift = vae.config.shift_factor or 0.0
    scale = vae.config.scaling_factor
    return (torch.cat(means) - shift) * scale, torch.cat(stds) * scale


def sdxl_time_ids(resolution: int) -> torch.Tensor:
    """SDXL's size conditioning for square, uncropped training images: (1, 6)."""
    return torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]], dtype=torch.float32)


def snr_weights(noise_scheduler: Any, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al., 2023) for the scheduler's prediction type."""
    alphas_cumprod = noise_scheduler.alphas_cumprod.to(timesteps.device)[timesteps].float()
    snr = alphas_cumprod / (1.0 - alphas_cumprod)
    clipped = torch.clamp(snr, max=gamma)
    if noise_scheduler.config.prediction_type == "v_prediction":
        return clipped / (snr + 1.0)
    return clipped / snr


def denoising_loss(
    unet: Any,
    noise_scheduler: Any,
    latents: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    prompt: PromptEmbedding,
    *,
    time_ids: torch.Tensor | None = None,
    snr_gamma: float | None = None,
    pixel_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-example diffusion loss of ``unet`` on ``latents`` noised with ``noise`` at ``timesteps``: (N,).

    ``pixel_weights`` (N, 1, h, w) weighs each latent pixel's squared error before the mean (the masked loss:
    1 on the animal, the background weight elsewhere); all ones gives the plain loss exactly.
    """
    count = latents.shape[0]
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    if noise_scheduler.config.prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    added_cond = None
    if prompt.pooled is not None and time_ids is not None:
        added_cond = {"text_embeds": prompt.pooled.expand(count, -1), "time_ids": time_ids.expand(count, -1)}
    prediction = unet(
        noisy,
        timesteps,
        encoder_hidden_states=prompt.hidden_states.expand(count, -1, -1),
        added_cond_kwargs=added_cond,
    ).sample
    squared = F.mse_loss(prediction.float(), target.float(), reduction="none")
    if pixel_weights is not None:
        squared = squared * pixel_weights
    loss = squared.mean(dim=(1, 2, 3))
    if snr_gamma is not None:
        loss = loss * snr_weights(noise_scheduler, timesteps, snr_gamma)
    return loss


@torch.no_grad()
def render_class_latents(
    components: TrainComponents,
    prompt: str,
    *,
    count: int,
    resolution: int,
    seed: int,
    device: str,
    should_stop: StopCallback,
) -> torch.Tensor:
    """Prior-preservation images of the species drawn by the base model, as UNet latents (count, C, h, w)."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    scheduler = DPMSolverMultistepScheduler.from_config(  # type: ignore[no-untyped-call]
        components.noise_scheduler.config, algorithm_type="dpmsolver++"
    )
    if components.family == "sdxl":
        pipeline: Any = StableDiffusionXLPipeline(  # type: ignore[no-untyped-call]
            vae=components.vae,
            text_encoder=components.text_encoders[0],
            text_encoder_2=components.text_encoders[1],
            tokenizer=components.tokenizers[0],
            tokenizer_2=components.tokenizers[1],
            unet=components.unet,
            scheduler=scheduler,
        )
    else:
        pipeline = StableDiffusionPipeline(  # type: ignore[no-untyped-call]
            vae=components.vae,
            text_encoder=components.text_encoders[0],
            tokenizer=components.tokenizers[0],
            unet=components.unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    pipeline.set_progress_bar_config(disable=True)
    latents = []
    for start in range(0, count, 4):
        if should_stop():
            raise TrainingCancelled(0)
        size = min(4, count - start)
        generators = [torch.Generator("cpu").manual_seed(seed + start + i) for i in range(size)]
        output = pipeline(
            prompt,
            num_images_per_prompt=size,
            height=resolution,
            width=resolution,
            num_inference_steps=25,
            guidance_scale=7.5,
            generator=generators,
            output_type="latent",
        )
        latents.append(output.images.float().cpu())
    return torch.cat(latents)


def lora_metadata(
    resolved: ResolvedTrainSpec, photos: Sequence[PreparedPhoto], steps_done: int, *, masked_photos: int = 0
) -> dict[str, str]:
    """What a LoRA file says about itself (no timestamps, so a repeated run writes the same bytes)."""
    spec = resolved.spec
    hashes = sorted({photo.sha256 for photo in photos})
    return {
        "format": LORA_FORMAT,
        "base_model": spec.base_model,
        "family": resolved.family,
        "preview": "true" if resolved.is_preview else "false",
        "token": spec.token,
        "species": spec.species,
        "instance_prompt": resolved.instance_prompt,
        "steps": str(steps_done),
        "rank": str(resolved.rank),
        "alpha": str(resolved.alpha),
        "learning_rate": str(resolved.learning_rate),
        "resolution": str(resolved.resolution),
        "batch_size": str(spec.batch_size),
        "seed": str(spec.seed),
        "prior_preservation": "true" if spec.prior_preservation else "false",
        "snr_gamma": "none" if spec.snr_gamma is None else str(spec.snr_gamma),
        "target_modules": ",".join(LORA_TARGET_MODULES),
        "mask_background_weight": "none"
        if spec.mask_background_weight is None
        else str(spec.mask_background_weight),
        "masked_photos": str(masked_photos),
        "photo_sha256": json.dumps(hashes),
    }


def latent_pixel_weights(
    photos: Sequence[PreparedPhoto], *, latent_size: tuple[int, int], background_weight: float
) -> torch.Tensor | None:
    """Each photo's loss weights at the latents' size, (N, 1, h, w): 1 on the animal, ``background_weight``
    on the background (a soft mask between); an unmasked photo weighs 1 everywhere. None if none is masked."""
    if all(photo.mask is None for photo in photos):
        return None
    side = photos[0].image.height
    masks = torch.stack(
        [
            torch.ones(side, side) if photo.mask is None else torch.from_numpy(photo.mask).float()
            for photo in photos
        ]
    )[:, None]
    small = F.interpolate(masks, size=latent_size, mode="area")
    return background_weight + (1.0 - background_weight) * small


def _merged_lora_forward(layer: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """``x·(W + s·B·A)ᵀ + b``: the LoRA layer's output, with the rank-r update added to the weight first."""
    (adapter,) = layer.active_adapters
    base = layer.base_layer
    weight = torch.addmm(
        base.weight, layer.lora_B[adapter].weight, layer.lora_A[adapter].weight, alpha=layer.scaling[adapter]
    )
    return F.linear(x, weight, base.bias)


def merge_lora_in_forward(unet: Any) -> int:
    """Make every float32 LoRA linear layer of ``unet`` compute with its merged weight; returns how many.

    peft's layer computes ``x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ``: three products over the whole activation (two of
    them thin, rank r) and an add, and as many again in the backward pass. With the update merged into the
    weight first (an out-by-in product, tiny beside the activations) the layer is one product forward and two
    backward, the gradients of A and B coming from the weight's gradient. The sum is the same; only the order
    of the float32 additions differs. Half-precision bases keep peft's form, where a small update added to a
    bf16 weight would be rounded away.
    """
    from peft.tuners.lora import Linear as LoraLinear

    merged = 0
    for module in unet.modules():
        if (
            isinstance(module, LoraLinear)
            and len(module.active_adapters) == 1
            and isinstance(module.base_layer, torch.nn.Linear)
            and module.base_layer.weight.dtype == torch.float32
            and isinstance(module.lora_dropout[module.active_adapters[0]], torch.nn.Identity)
            and not module.use_dora.get(module.active_adapters[0], False)
        ):
            module.forward = functools.partial(_merged_lora_forward, module)  # type: ignore[method-assign]
            merged += 1
    return merged


def lora_bytes(unet: Any, *, rank: int, alpha: int, metadata: dict[str, str]) -> bytes:
    """The UNet's LoRA weights as safetensors bytes, in the layout diffusers' ``load_lora_weights`` reads."""
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save

    weights = {
        f"unet.{key}": value.detach().to("cpu", torch.float32).contiguous()
        for key, value in get_peft_model_state_dict(unet).items()
    }
    adapter_config = {
        "unet.r": rank,
        "unet.lora_alpha": alpha,
        "unet.target_modules": sorted(LORA_TARGET_MODULES),
        "unet.init_lora_weights": "gaussian",
    }
    file_metadata = {"format": "pt", "lora_adapter_metadata": json.dumps(adapter_config, sort_keys=True)}
    file_metadata.update({f"{METADATA_PREFIX}{key}": value for key, value in metadata.items()})
    return save(weights, metadata=file_metadata)


def safetensors_metadata(data: bytes) -> dict[str, str]:
    """The metadata in a safetensors header, read from the bytes (no file, no tensors loaded)."""
    if len(data) < 8:
        raise ValueError("not a safetensors file: too short")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        raise ValueError("not a safetensors file: the header runs past the end")
    header = json.loads(data[8 : 8 + size])
    raw = header.get("__metadata__") or {} if isinstance(header, dict) else {}
    return {str(key): str(value) for key, value in raw.items()}


def read_lora_metadata(lora: Path | bytes) -> dict[str, str]:
    """The petportrait metadata of a LoRA (file or bytes) written by ``train_lora``."""
    raw = safetensors_metadata(lora if isinstance(lora, bytes) else Path(lora).read_bytes())
    return {
        key[len(METADATA_PREFIX) :]: value for key, value in raw.items() if key.startswith(METADATA_PREFIX)
    }


def _install_file(data: bytes, destination: Path) -> None:
    """Write ``data`` to ``destination`` atomically (through a temporary name in the destination folder)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
    try:
        staging.write_bytes(data)
        os.replace(staging, destination)
    finally:
        staging.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------------------
# The recipe


def train_lora(
    spec: TrainSpec,
    progress: ProgressCallback | None = None,
    should_stop: StopCallback | None = None,
) -> TrainedLora:
    """Train a DreamBooth-LoRA of one pet on ``spec.base_model``; the result holds it as safetensors bytes
    (also written to ``spec.output_path`` if set). Nothing else is written to disk.

    ``progress`` is called after every step; ``should_stop`` is asked before every step (and while class
    images are drawn), and when it returns True training raises TrainingCancelled before the next step.
    """
    from peft import LoraConfig

    started = time.monotonic()
    stop = should_stop or (lambda: False)
    resolved = check_spec(spec)
    device = spec.device
    on_cuda = torch.device(device).type == "cuda"
    weight_dtype = torch.bfloat16 if resolved.mixed_precision == "bf16" else torch.float32
    # 1. Photos: square crops at the training resolution, in memory, with their subject masks if asked.
    mask_makers: list[MaskMaker | None] | None = None
    if spec.mask_background_weight is not None:
        try:
            maker = mask_function(spec.segmenter)
        except SegmenterError as exc:
            raise InvalidTrainSpec(str(exc)) from None
        switches = list(spec.masked) if spec.masked is not None else [True] * len(spec.photos)
        mask_makers = [maker if on else None for on in switches]
    try:
        photos = prepare_photos(
            list(spec.photos),
            resolution=resolved.resolution,
            crop_boxes=spec.crop_boxes,
            hflip=spec.hflip,
            mask_makers=mask_makers,
        )
    except PhotoError as exc:
        raise InvalidTrainSpec(str(exc)) from None

    # 2. The base model, in float32 on the CPU until the LoRA is attached.
    components = load_train_components(spec.base_model, family=resolved.family)
    for module in (*components.text_encoders, components.vae, components.unet):
        module.requires_grad_(False)
        module.eval()
    components.vae.to(device)  # float32: the photos are encoded once, in full precision
    for module in (*components.text_encoders, components.unet):
        module.to(device)
        if weight_dtype != torch.float32:
            module.to(dtype=weight_dtype)

    # 3. Cache what does not change during the run: photo latents and prompt embeddings.
    instance_mean, instance_std = encode_images(
        components.vae, images_to_tensor([p.image for p in photos]), device=device
    )
    instance_weights = latent_pixel_weights(
        photos,
        latent_size=(instance_mean.shape[2], instance_mean.shape[3]),
        background_weight=spec.mask_background_weight or 0.0,
    )
    if instance_weights is not None:
        instance_weights = instance_weights.to(device)
    masked_photos = sum(1 for photo in photos if photo.mask is not None and not photo.flipped)
    photos = [dataclasses.replace(photo, mask=None) for photo in photos]  # masks end here, in memory
    instance_prompt = encode_prompt(components, resolved.instance_prompt, device=device)
    class_latents: torch.Tensor | None = None
    class_prompt: PromptEmbedding | None = None
    if spec.prior_preservation:
        class_latents = render_class_latents(
            components,
            resolved.class_prompt,
            count=resolved.num_class_images,
            resolution=resolved.resolution,
            seed=spec.seed,
            device=device,
            should_stop=stop,
        ).to(device)
        class_prompt = encode_prompt(components, resolved.class_prompt, device=device)
    time_ids = sdxl_time_ids(resolved.resolution).to(device) if resolved.family == "sdxl" else None
    # The VAE and text encoders are not needed any more.
    unet, noise_scheduler = components.unet, components.noise_scheduler
    del components
    if on_cuda:
        torch.cuda.empty_cache()

    # 4. LoRA on the UNet's attention projections; its initial weights come from the seed.
    rng_devices = [torch.device(device).index or 0] if on_cuda else []
    with torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(spec.seed)
        unet.add_adapter(
            LoraConfig(
                r=resolved.rank,
                lora_alpha=resolved.alpha,
                init_lora_weights="gaussian",
                target_modules=list(LORA_TARGET_MODULES),
            )
        )
    lora_parameters = [p for p in unet.parameters() if p.requires_grad]
    for parameter in lora_parameters:
        parameter.data = parameter.data.float()  # trained in float32 even when the base is bf16
    from diffusers.models.attention_processor import AttnProcessor2_0

    unet.set_attn_processor(AttnProcessor2_0())  # type: ignore[no-untyped-call]  # PyTorch SDPA
    merge_lora_in_forward(unet)
    if spec.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    if spec.use_8bit_adam:
        import bitsandbytes as bnb

        optimizer: torch.optim.Optimizer = bnb.optim.AdamW8bit(
            lora_parameters, lr=resolved.learning_rate, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8
        )
    else:
        optimizer = torch.optim.AdamW(
            lora_parameters,
            lr=resolved.learning_rate,
            betas=(0.9, 0.999),
            weight_decay=1e-2,
            eps=1e-8,
            fused=torch.device(device).type in FUSED_ADAMW_DEVICES,
        )

    # 5. Train. All randomness comes from one CPU generator, so a CPU run is repeatable bit for bit.
    generator = torch.Generator("cpu").manual_seed(spec.seed)
    count = instance_mean.shape[0]
    order = torch.randperm(count, generator=generator)
    position = 0
    losses: list[float] = []
    loop_started = time.monotonic()
    num_timesteps = noise_scheduler.config.num_train_timesteps
    for step in range(resolved.steps):
        if stop():
            raise TrainingCancelled(step)
        indices = []
        for _ in range(spec.batch_size):
            if position == count:
                order, position = torch.randperm(count, generator=generator), 0
            indices.append(int(order[position]))
            position += 1
        mean, std = instance_mean[indices], instance_std[indices]
        sample = torch.randn(mean.shape, generator=generator).to(device)
        latents = mean + std * sample
        noise = torch.randn(latents.shape, generator=generator).to(device)
        timesteps = torch.randint(0, num_timesteps, (latents.shape[0],), generator=generator).to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=resolved.mixed_precision == "bf16"):
            loss = denoising_loss(
                unet,
                noise_scheduler,
                latents,
                noise,
                timesteps,
                instance_prompt,
                time_ids=time_ids,
                snr_gamma=spec.snr_gamma,
                pixel_weights=None if instance_weights is None else instance_weights[indices],
            ).mean()
            if class_latents is not None and class_prompt is not None:
                picks = torch.randint(0, class_latents.shape[0], (spec.batch_size,), generator=generator)
                prior = class_latents[picks.to(class_latents.device)]
                prior_noise = torch.randn(prior.shape, generator=generator).to(device)
                prior_t = torch.randint(0, num_timesteps, (prior.shape[0],), generator=generator).to(device)
                prior_loss = denoising_loss(
                    unet,
                    noise_scheduler,
                    prior,
                    prior_noise,
                    prior_t,
                    class_prompt,
                    time_ids=time_ids,
                    snr_gamma=spec.snr_gamma,
                ).mean()
                loss = loss + spec.prior_loss_weight * prior_loss
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(lora_parameters, max_norm=1.0, foreach=True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        value = float(loss.detach().item())
        if not math.isfinite(value):
            raise FloatingPointError(f"the training loss became {value} at step {step + 1}")
        losses.append(value)
        if progress is not None:
            elapsed = time.monotonic() - loop_started
            eta = elapsed / (step + 1) * (resolved.steps - step - 1)
            progress(TrainProgress(step=step + 1, total=resolved.steps, loss=value, eta_seconds=eta))

    # 6. The LoRA with its metadata, in memory; a file only where one was asked.
    metadata = lora_metadata(resolved, photos, resolved.steps, masked_photos=masked_photos)
    data = lora_bytes(unet, rank=resolved.rank, alpha=resolved.alpha, metadata=metadata)
    output = Path(spec.output_path) if spec.output_path is not None else None
    if output is not None:
        _install_file(data, output)
    tail = losses[-10:]
    return TrainedLora(
        data=data,
        path=output,
        metadata=metadata,
        final_loss=sum(tail) / len(tail),
        steps_done=resolved.steps,
        seconds=time.monotonic() - started,
    )


__all__ = [
    "CLASS_NOUNS",
    "DEFAULT_TOKEN",
    "FAMILY_DEFAULTS",
    "MIN_PHOTOS",
    "SPECIES",
    "InvalidTrainSpec",
    "TrainProgress",
    "TrainSpec",
    "TrainedLora",
    "TrainingCancelled",
    "read_lora_metadata",
    "train_lora",
]
