"""Rendering portraits: a base pipeline loaded once, a pet's LoRA applied per request, images out.

A ``Renderer`` keeps one diffusers pipeline for its lifetime. For each request it reads the pet's LoRA (from
bytes in memory, a file, or a ``LoadedLora`` the caller read once for several requests), sets it by adding
``scale * B @ A`` to the weights it targets, renders, and unloads it by copying the original weights back.
It keeps no LoRA between requests: a long-lived worker holds no weights of a model that expired or was
deleted (a render job reads the model's blob anyway, and parsing it costs milliseconds beside a render's
seconds). The copy back is exact, so a request never sees another pet's LoRA and the same seed gives the
same image before and after any number of other requests; and since the LoRA is folded into the weights,
rendering with it costs no more per step than rendering without it.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont

from petportrait.ml.models import default_dtype, family_of, load_pipeline
from petportrait.ml.preview import is_preview_model
from petportrait.ml.styles import COMMON_NEGATIVE_PROMPT, get_style
from petportrait.ml.train import CLASS_NOUNS, DEFAULT_TOKEN, METADATA_PREFIX, SPECIES, safetensors_metadata

MAX_COUNT = 8
MIN_SIDE = 64
MAX_SIDE = 1536
MAX_STEPS = 100
MAX_GUIDANCE = 30.0
PREVIEW_LABEL = "PREVIEW - random model, not a portrait"


class InvalidRenderRequest(ValueError):
    """A render request that cannot be run as given; the message says what is wrong."""


@dataclass(frozen=True)
class LoadedLora:
    """A LoRA read into memory: per target module (down, up) matrices, and its metadata."""

    sha256: str
    layers: dict[str, tuple[torch.Tensor, torch.Tensor]]
    scale: float  # alpha / rank
    metadata: dict[str, str]


@dataclass(frozen=True, kw_only=True)
class RenderRequest:
    """One render. ``style`` or ``prompt`` (or both: the prompt then adds detail to the style) is needed.

    A free-text ``prompt`` may name the pet as ``{subject}``; if it names neither ``{subject}`` nor the token,
    the subject is put in front of it. ``width``/``height`` default to the model's native resolution.
    """

    species: str
    lora: bytes | LoadedLora | None = None  # the LoRA in memory (safetensors bytes, or read by read_lora)
    lora_path: Path | None = None  # or a LoRA file (command line, tests)
    token: str = DEFAULT_TOKEN
    style: str | None = None
    prompt: str | None = None
    negative_prompt: str | None = None  # replaces the style's negative prompt when given
    seed: int = 0
    count: int = 1
    width: int | None = None
    height: int | None = None
    steps: int = 25
    guidance: float = 7.5
    lora_scale: float = 1.0


@dataclass(frozen=True)
class RenderResult:
    """The images and every parameter needed to render them again."""

    images: list[Image.Image]
    params: dict[str, Any]
    is_preview: bool


def build_prompts(request: RenderRequest) -> tuple[str, str]:
    """The prompt and negative prompt of a request; raises InvalidRenderRequest or UnknownStyle."""
    subject = f"{request.token} {CLASS_NOUNS[request.species]}"
    if request.style is not None:
        style = get_style(request.style)
        prompt = style.format(subject)
        if request.prompt:
            prompt = f"{prompt}, {request.prompt.replace('{subject}', subject)}"
        negative = style.negative_prompt
    elif request.prompt and request.prompt.strip():
        text = request.prompt.strip()
        if "{subject}" in text:
            prompt = text.replace("{subject}", subject)
        elif request.token in text.split():
            prompt = text
        else:
            prompt = f"{subject}, {text}"
        negative = COMMON_NEGATIVE_PROMPT
    else:
        raise InvalidRenderRequest("a render needs a style or a prompt")
    if request.negative_prompt is not None:
        negative = request.negative_prompt
    return prompt, negative


def read_lora(source: Path | bytes, *, device: str, name: str | None = None) -> LoadedLora:
    """Read a LoRA written by ``train_lora`` (UNet LoRA in PEFT layout; bytes or a file) onto ``device``."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_tensors

    if isinstance(source, bytes):
        data, label = source, name or "LoRA"
    else:
        label = name or Path(source).name
        data = Path(source).read_bytes()
    try:
        tensors = load_tensors(data)
        raw_metadata = safetensors_metadata(data)
    except (SafetensorError, ValueError, OSError) as exc:
        raise InvalidRenderRequest(f"the LoRA file {label} cannot be read: {exc}") from None
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        if not key.startswith("unet.") or not key.endswith((".lora_A.weight", ".lora_B.weight")):
            raise InvalidRenderRequest(
                f"the LoRA file {label} has a weight {key!r} this renderer does not apply "
                "(it applies UNet LoRA in PEFT layout, as written by train_lora)"
            )
        module, kind = key[len("unet.") :].rsplit(".", 2)[0], key.rsplit(".", 2)[1]
        pairs.setdefault(module, {})[kind] = tensor
    layers: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for module, pair in pairs.items():
        if set(pair) != {"lora_A", "lora_B"}:
            raise InvalidRenderRequest(f"the LoRA file {label} lacks half of the weights of {module}")
        layers[module] = (
            pair["lora_A"].to(device=device, dtype=torch.float32),
            pair["lora_B"].to(device=device, dtype=torch.float32),
        )
    config = json.loads(raw_metadata.get("lora_adapter_metadata", "{}") or "{}")
    ranks = {down.shape[0] for down, _ in layers.values()}
    rank = int(config.get("unet.r", next(iter(ranks)) if len(ranks) == 1 else 0))
    alpha = float(config.get("unet.lora_alpha", rank))
    if not layers or rank <= 0:
        raise InvalidRenderRequest(f"the LoRA file {label} has no usable LoRA weights")
    metadata = {
        key[len(METADATA_PREFIX) :]: value
        for key, value in raw_metadata.items()
        if key.startswith(METADATA_PREFIX)
    }
    return LoadedLora(
        sha256=hashlib.sha256(data).hexdigest(), layers=layers, scale=alpha / rank, metadata=metadata
    )


def json_safe(value: Any) -> Any:
    """``value`` with tuples as lists, non-finite floats as strings and other objects as text: plain JSON."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def mark_preview(image: Image.Image) -> Image.Image:
    """``image`` with a band across its foot that says it is a preview, not a portrait."""
    marked = image.convert("RGB")
    width, height = marked.size
    band = max(12, height // 8)
    draw = ImageDraw.Draw(marked)
    draw.rectangle((0, height - band, width, height), fill=(200, 0, 0))
    for x in range(-band, width, band):  # hazard stripes, visible even where the text is too small to read
        draw.line((x, height, x + band, height - band), fill=(255, 215, 0), width=max(1, band // 6))
    font_size = max(8, int(band * 0.6))
    try:
        font: ImageFont.ImageFont | ImageFont.FreeTypeFont = ImageFont.load_default(size=font_size)
    except TypeError:  # Pillow without FreeType
        font = ImageFont.load_default()
    for text in (PREVIEW_LABEL, "PREVIEW - not a portrait", "PREVIEW"):
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font, stroke_width=1)
        if right - left <= width - 4:
            break
    x = max(2, (width - int(right - left)) // 2)
    y = height - band + (band - int(bottom - top)) // 2 - int(top)
    draw.text((x, y), text, fill=(255, 255, 255), font=font, stroke_width=1, stroke_fill=(0, 0, 0))
    return marked


class Renderer:
    """A base pipeline, loaded once, that renders requests one at a time (thread-safe).

    The first LoRA it applies makes it keep a copy of the weights LoRAs target (the UNet's attention
    projections: about a ninth of an SD 1.5 UNet), from which they are restored after every request.
    """

    def __init__(self, source: str, device: str, dtype: torch.dtype | None = None) -> None:
        from diffusers import DPMSolverMultistepScheduler
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.source = source
        self.device = device
        self.dtype = dtype or default_dtype(device)
        self.family = family_of(source)
        self.is_preview = is_preview_model(source)
        self.pipeline = load_pipeline(source, device=device, dtype=self.dtype)
        self.pipeline.scheduler = DPMSolverMultistepScheduler.from_config(  # type: ignore[no-untyped-call]
            self.pipeline.scheduler.config, algorithm_type="dpmsolver++", solver_order=2
        )
        self.pipeline.unet.set_attn_processor(AttnProcessor2_0())  # type: ignore[no-untyped-call]
        vae_scale = self.pipeline.vae_scale_factor
        self.native_size = int(self.pipeline.unet.config.sample_size) * vae_scale
        self._lock = threading.Lock()
        self._originals: dict[str, torch.Tensor] = {}

    # -- LoRA: load, set, unload ---------------------------------------------------------------------------

    def load_lora(self, source: Path | bytes | LoadedLora, *, name: str | None = None) -> LoadedLora:
        """The LoRA read onto this renderer's device and checked against its model (kept nowhere here)."""
        lora = source if isinstance(source, LoadedLora) else read_lora(source, device=self.device, name=name)
        label = name or (Path(source).name if isinstance(source, Path | str) else "LoRA")
        family = lora.metadata.get("family")
        if family is not None and family != self.family:
            raise InvalidRenderRequest(
                f"the LoRA {label} was trained on a {family} model; this renderer has a {self.family} one"
            )
        modules = dict(self.pipeline.unet.named_modules())
        for name, (down, up) in lora.layers.items():
            module = modules.get(name)
            if not isinstance(module, torch.nn.Linear):
                raise InvalidRenderRequest(
                    f"the LoRA {label} targets {name!r}, which this model does not have"
                )
            if (up.shape[0], down.shape[1]) != tuple(module.weight.shape):
                raise InvalidRenderRequest(
                    f"the LoRA {label} does not fit this model: {name} is {tuple(module.weight.shape)}"
                )
        return lora

    @torch.no_grad()
    def set_lora(self, lora: LoadedLora, scale: float) -> None:
        """Fold ``scale * alpha/rank * B @ A`` into the weights the LoRA targets, keeping the originals."""
        modules = dict(self.pipeline.unet.named_modules())
        for name, (down, up) in lora.layers.items():
            weight = modules[name].weight
            if name not in self._originals:
                self._originals[name] = weight.detach().clone()
            delta = (up @ down).mul_(scale * lora.scale)
            weight.copy_((self._originals[name].float() + delta).to(weight.dtype))

    @torch.no_grad()
    def unload_lora(self) -> None:
        """Put back the original weights, exactly."""
        modules = dict(self.pipeline.unet.named_modules())
        for name, original in self._originals.items():
            modules[name].weight.copy_(original)

    # -- rendering ---------------------------------------------------------------------------------------

    def check(self, request: RenderRequest) -> tuple[int, int]:
        """Check a request against this model; return its (width, height)."""
        if request.species not in SPECIES:
            raise InvalidRenderRequest(
                f"unknown species {request.species!r}; it must be one of {', '.join(SPECIES)}"
            )
        width = request.width or self.native_size
        height = request.height or self.native_size
        for name, value in (("width", width), ("height", height)):
            if value % 8 != 0 or not MIN_SIDE <= value <= MAX_SIDE:
                raise InvalidRenderRequest(
                    f"{name} {value} must be a multiple of 8 between {MIN_SIDE} and {MAX_SIDE}"
                )
        if not 1 <= request.count <= MAX_COUNT:
            raise InvalidRenderRequest(f"count must be between 1 and {MAX_COUNT}, got {request.count}")
        if not 1 <= request.steps <= MAX_STEPS:
            raise InvalidRenderRequest(f"steps must be between 1 and {MAX_STEPS}, got {request.steps}")
        if not (math.isfinite(request.guidance) and 0 <= request.guidance <= MAX_GUIDANCE):
            raise InvalidRenderRequest(
                f"guidance must be between 0 and {MAX_GUIDANCE:g}, got {request.guidance}"
            )
        if not math.isfinite(request.lora_scale):
            raise InvalidRenderRequest(f"lora_scale must be a number, got {request.lora_scale}")
        if request.lora is not None and request.lora_path is not None:
            raise InvalidRenderRequest("a render takes its LoRA in memory or from a file, not both")
        if request.lora_path is not None and not Path(request.lora_path).is_file():
            raise InvalidRenderRequest(f"the LoRA file {request.lora_path} does not exist")
        return width, height

    def render(self, request: RenderRequest) -> RenderResult:
        """Render ``request``: the images (marked when the model is the preview) and their parameters."""
        width, height = self.check(request)
        prompt, negative = build_prompts(request)
        seeds = [request.seed + i for i in range(request.count)]
        with self._lock:
            started = time.monotonic()
            source = request.lora if request.lora is not None else request.lora_path
            lora = None if source is None else self.load_lora(source)
            if lora is not None:
                for field_name, value in (("token", request.token), ("species", request.species)):
                    trained = lora.metadata.get(field_name)
                    if trained is not None and trained != value:
                        raise InvalidRenderRequest(
                            f"the LoRA was trained with {field_name} {trained!r}, the request says {value!r}"
                        )
            try:
                if lora is not None:
                    self.set_lora(lora, request.lora_scale)
                output = self.pipeline(
                    prompt=prompt,
                    negative_prompt=negative,
                    num_images_per_prompt=request.count,
                    width=width,
                    height=height,
                    num_inference_steps=request.steps,
                    guidance_scale=request.guidance,
                    generator=[torch.Generator("cpu").manual_seed(seed) for seed in seeds],
                )
            finally:
                if lora is not None:
                    self.unload_lora()
            seconds = time.monotonic() - started
        from diffusers import __version__ as diffusers_version

        images = list(output.images)
        if self.is_preview:
            images = [mark_preview(image) for image in images]
        scheduler = self.pipeline.scheduler
        params: dict[str, Any] = {
            "model": self.source,
            "family": self.family,
            "preview": self.is_preview,
            "prompt": prompt,
            "negative_prompt": negative,
            "style": request.style,
            "free_text": request.prompt,
            "token": request.token,
            "species": request.species,
            "seed": request.seed,
            "seeds": seeds,
            "count": request.count,
            "steps": request.steps,
            "guidance": request.guidance,
            "width": width,
            "height": height,
            "scheduler": type(scheduler).__name__,
            "scheduler_config": json_safe(dict(scheduler.config)),
            "lora_sha256": lora.sha256 if lora is not None else None,
            "lora_scale": request.lora_scale if lora is not None else None,
            "lora_metadata": dict(lora.metadata) if lora is not None else None,
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch."),
            "generator": "torch.Generator('cpu').manual_seed(seed) per image",
            "diffusers_version": diffusers_version,
            "torch_version": torch.__version__,
            "seconds": round(seconds, 3),
        }
        return RenderResult(images=images, params=params, is_preview=self.is_preview)
