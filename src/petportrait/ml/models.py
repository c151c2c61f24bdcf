"""Which base model and device to use, and loading diffusers pipelines with errors a person can act on.

A base model is a hub id (``stable-diffusion-v1-5/stable-diffusion-v1-5``) or a local folder written by
``save_pretrained``; both go through diffusers' ``from_pretrained``. The preview model is one such folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from petportrait.ml.preview import PREVIEW_MODEL_ID, ensure_preview_model, is_preview_model

Family = Literal["sd15", "sdxl"]

DEFAULT_CUDA_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_SDXL_MODEL = "stabilityai/stable-diffusion-xl-base-1.0"
# SDXL is the default on a CUDA device with at least this much memory: diffusers' SDXL DreamBooth-LoRA
# recipe (bf16, gradient checkpointing, 8-bit Adam where bitsandbytes is installed) trains at 1024 px on a
# 16 GB card, which reports a little under 16 GiB.
SDXL_MIN_CUDA_BYTES = 15 * 1024**3
BASE_MODEL_ENV = "PETPORTRAIT__ML__BASE_MODEL"

_SDXL_CLASSES = {"StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline"}
_SD15_CLASSES = {"StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"}


class ModelLoadError(RuntimeError):
    """A base model that cannot be found or loaded; the message says how to point at a local copy."""


class DeviceUnavailable(RuntimeError):
    """A configured device that this machine does not have."""


@dataclass(frozen=True)
class ResolvedModel:
    """A base model to load: ``source`` is a hub id or a folder."""

    source: str
    is_preview: bool
    family: Family
    reason: str = ""  # why this model: configured, or the device and its memory


def load_error(source: str, reason: str) -> ModelLoadError:
    """A ModelLoadError for ``source`` that explains how to use a local copy instead."""
    return ModelLoadError(
        f"could not load the base model {source!r}: {reason}. "
        f"If this machine cannot reach the Hugging Face Hub, download the model on one that can "
        f"(e.g. `hf download {DEFAULT_CUDA_MODEL} --local-dir /models/sd15`), copy the folder here and set "
        f"{BASE_MODEL_ENV}=/models/sd15 (a folder with model_index.json). On a CPU-only machine, leave "
        f"{BASE_MODEL_ENV} unset to use the offline preview model."
    )


def pick_device(configured: str | None) -> str:
    """The device to run on: the configured one (checked), else CUDA, else MPS, else CPU."""
    if configured:
        try:
            device = torch.device(configured)
        except RuntimeError as exc:
            raise DeviceUnavailable(f"unknown device {configured!r}: {exc}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise DeviceUnavailable(
                f"device {configured!r} is configured but this machine has no CUDA device"
            )
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise DeviceUnavailable(f"device {configured!r} is configured but MPS is not available here")
        if device.type not in ("cpu", "cuda", "mps"):
            raise DeviceUnavailable(f"device {configured!r} is not supported; use cpu, cuda, cuda:N or mps")
        return str(device)
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def default_dtype(device: str) -> torch.dtype:
    """The weight dtype for inference on ``device``: bfloat16 on CUDA, float16 on MPS, float32 on CPU."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.bfloat16
    if kind == "mps":
        return torch.float16
    return torch.float32


def _looks_like_path(value: str) -> bool:
    return value.startswith(("/", "./", "../", "~")) or "\\" in value or value.count("/") > 1


def family_of(source: str) -> Family:
    """The family of a model: from model_index.json in a folder, else from the hub id's name."""
    index = Path(source) / "model_index.json"
    if index.is_file():
        try:
            class_name = json.loads(index.read_text(encoding="utf-8")).get("_class_name", "")
        except ValueError as exc:
            raise load_error(source, f"its model_index.json is not valid JSON ({exc})") from None
        if class_name in _SDXL_CLASSES:
            return "sdxl"
        if class_name in _SD15_CLASSES:
            return "sd15"
        raise load_error(
            source,
            f"its pipeline class {class_name!r} is not supported; use a Stable Diffusion 1.5 or SDXL model",
        )
    return "sdxl" if "xl" in source.lower() else "sd15"


NATIVE_SIZE: dict[Family, int] = {"sd15": 512, "sdxl": 1024}


def native_size(source: str) -> int:
    """The side, in pixels, a model of this source's family is trained and renders at."""
    return NATIVE_SIZE[family_of(source)]


def cuda_memory(device: str) -> int | None:
    """The total memory of a CUDA device in bytes; None where there is no such device."""
    if torch.device(device).type != "cuda" or not torch.cuda.is_available():
        return None
    index = torch.device(device).index or 0
    return int(torch.cuda.get_device_properties(index).total_memory)


def default_base_model(device: str, *, memory_bytes: int | None) -> tuple[str, Family, str]:
    """The base model for a device when none is configured: (hub id, family, the reason, for a person)."""
    hint = f"set {BASE_MODEL_ENV} to choose another"
    if (
        torch.device(device).type == "cuda"
        and memory_bytes is not None
        and memory_bytes >= SDXL_MIN_CUDA_BYTES
    ):
        gib = memory_bytes / 1024**3
        return DEFAULT_SDXL_MODEL, "sdxl", f"SDXL: the CUDA device has {gib:.0f} GiB (SDXL needs 15); {hint}"
    if memory_bytes is not None:
        gib = memory_bytes / 1024**3
        reason = f"SD 1.5: the CUDA device has {gib:.0f} GiB, under the 15 GiB SDXL needs; {hint}"
    else:
        reason = f"SD 1.5: SDXL is chosen only on a CUDA device with 15 GiB or more; {hint}"
    return DEFAULT_CUDA_MODEL, "sd15", reason


def resolve_base_model(
    configured: str | None, *, device: str, models_dir: Path, memory_bytes: int | None = None
) -> ResolvedModel:
    """The base model: the configured hub id or folder; else on CUDA SDXL where the device's memory allows
    (``memory_bytes``, read from the device when not given) and SD 1.5 otherwise, SD 1.5 on MPS, and the
    preview model on the CPU. ``reason`` says which and why."""
    if configured == PREVIEW_MODEL_ID or (not configured and torch.device(device).type == "cpu"):
        folder = ensure_preview_model(models_dir)
        why = (
            "configured" if configured else f"the preview model: no GPU (set {BASE_MODEL_ENV} to choose one)"
        )
        return ResolvedModel(source=str(folder), is_preview=True, family="sd15", reason=why)
    if not configured:
        memory = memory_bytes if memory_bytes is not None else cuda_memory(device)
        source, family, why = default_base_model(device, memory_bytes=memory)
        return ResolvedModel(source=source, is_preview=False, family=family, reason=why)
    folder = Path(configured).expanduser()
    if folder.is_dir():
        if not (folder / "model_index.json").is_file():
            raise load_error(configured, f"the folder {folder} has no model_index.json")
        source = str(folder.resolve())
        return ResolvedModel(
            source=source, is_preview=is_preview_model(folder), family=family_of(source), reason="configured"
        )
    if _looks_like_path(configured) or folder.exists():
        raise load_error(configured, f"the folder {folder} does not exist")
    return ResolvedModel(
        source=configured, is_preview=False, family=family_of(configured), reason="configured"
    )


def _dtype_kwargs(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """``dtype=`` for diffusers releases that renamed ``torch_dtype``, else ``torch_dtype=``."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401  (present since the rename)
    except ImportError:
        return {"torch_dtype": dtype}
    return {"dtype": dtype}


def load_pipeline(source: str, *, device: str, dtype: torch.dtype) -> Any:
    """A text-to-image pipeline from ``source`` via diffusers' auto class, on ``device`` in ``dtype``."""
    from diffusers import AutoPipelineForText2Image

    family_of(source)  # refuses unsupported pipeline classes in a local folder before loading
    try:
        pipeline = AutoPipelineForText2Image.from_pretrained(  # type: ignore[no-untyped-call]
            source, **_dtype_kwargs(dtype)
        )
    except (OSError, ValueError, KeyError) as exc:
        raise load_error(source, f"{type(exc).__name__}: {exc}") from exc
    pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def load_component(cls: Any, source: str, subfolder: str, **kwargs: Any) -> Any:
    """One component (unet, vae, text_encoder, tokenizer...) of ``source`` via ``from_pretrained``."""
    try:
        return cls.from_pretrained(source, subfolder=subfolder, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise load_error(source, f"{subfolder}: {type(exc).__name__}: {exc}") from exc
