"""Several pets in one portrait: each pet's LoRA and prompt act only in its own region of the image.

Regional prompting with attention masks: every attention layer of the UNet computes its output once per
pet, with that pet's LoRA update added to the layer's projections and (in cross-attention) that pet's
prompt as the context, and the outputs are blended by the pets' region masks at the layer's resolution. The
masks partition the image, so at every pixel exactly one pet's LoRA and prompt act. The layouts are simple
presets: ``side_by_side`` (vertical strips, left to right) and ``front_back`` (the first pet in front, across
the lower part; the others behind it, side by side across the upper part).

Stable Diffusion 1.5-family models (and the preview model) only; the LoRAs stay in memory.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from petportrait.ml.render import (
    InvalidRenderRequest,
    LoadedLora,
    Renderer,
    RenderRequest,
    RenderResult,
    build_prompts,
    mark_preview,
)

LAYOUTS = ("side_by_side", "front_back")
MAX_SUBJECTS = 3
PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")


def region_masks(layout: str, count: int, height: int, width: int) -> torch.Tensor:
    """Masks (count, height, width) of 0 and 1 that partition the image among ``count`` subjects."""
    if layout not in LAYOUTS:
        raise InvalidRenderRequest(f"unknown layout {layout!r}; it must be one of {', '.join(LAYOUTS)}")
    if not 2 <= count <= MAX_SUBJECTS:
        raise InvalidRenderRequest(f"a group portrait has 2 to {MAX_SUBJECTS} pets, not {count}")
    masks = torch.zeros((count, height, width))
    if layout == "side_by_side":
        edges = [round(i * width / count) for i in range(count + 1)]
        for i in range(count):
            masks[i, :, edges[i] : edges[i + 1]] = 1.0
        return masks
    split = height // 2  # front_back: the first subject in front (lower half), the others behind it
    masks[0, split:, :] = 1.0
    edges = [round(i * width / (count - 1)) for i in range(count)]
    for i in range(1, count):
        masks[i, :split, edges[i - 1] : edges[i]] = 1.0
    return masks


class RegionalLoraAttnProcessor:
    """An attention processor that runs the layer once per region, with that region's LoRA update in its
    projections and its own context in cross-attention, and keeps each result only inside its region."""

    def __init__(
        self,
        deltas: Sequence[dict[str, torch.Tensor]],
        masks: torch.Tensor,
        contexts: Sequence[torch.Tensor] | None,
    ) -> None:
        self.deltas = list(deltas)  # per region: projection name -> weight update (out, in)
        self.masks = masks  # (regions, H, W) at the latent resolution
        self.contexts = None if contexts is None else list(contexts)

    def _masks_for(self, tokens: int) -> torch.Tensor:
        """The region masks at a layer whose hidden states have ``tokens`` spatial positions: (R, tokens)."""
        height, width = self.masks.shape[1:]
        factor = math.sqrt(height * width / tokens)
        size = (round(height / factor), round(width / factor))
        if size[0] * size[1] != tokens:
            raise ValueError(f"cannot fit {tokens} positions to a {height}x{width} latent")
        return F.interpolate(self.masks[:, None], size=size, mode="area")[:, 0].reshape(len(self.deltas), -1)

    def _weight(self, layer: torch.nn.Linear, region: int, name: str) -> torch.Tensor:
        delta = self.deltas[region].get(name)
        return layer.weight if delta is None else layer.weight + delta.to(layer.weight.dtype)

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        if hidden_states.ndim != 3 or attn.spatial_norm is not None or attn.group_norm is not None:
            raise ValueError("regional attention supports token-shaped hidden states without extra norms")
        residual = hidden_states
        batch, tokens, _ = hidden_states.shape
        masks = self._masks_for(tokens).to(hidden_states.dtype)
        out = torch.zeros_like(hidden_states)
        for region in range(len(self.deltas)):
            context = hidden_states
            if encoder_hidden_states is not None:
                context = self.contexts[region] if self.contexts is not None else encoder_hidden_states
                if attn.norm_cross:
                    context = attn.norm_encoder_hidden_states(context)
            query = F.linear(hidden_states, self._weight(attn.to_q, region, "to_q"), attn.to_q.bias)
            key = F.linear(context, self._weight(attn.to_k, region, "to_k"), attn.to_k.bias)
            value = F.linear(context, self._weight(attn.to_v, region, "to_v"), attn.to_v.bias)
            head_dim = query.shape[-1] // attn.heads
            query, key, value = (
                t.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for t in (query, key, value)
            )
            result = F.scaled_dot_product_attention(query, key, value)
            result = result.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim)
            to_out = attn.to_out[0]
            result = F.linear(result, self._weight(to_out, region, "to_out.0"), to_out.bias)
            result = attn.to_out[1](result)
            out = out + result * masks[region][None, :, None]
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def lora_deltas(lora: LoadedLora, scale: float) -> dict[str, dict[str, torch.Tensor]]:
    """A LoRA's weight updates grouped by attention module: module path -> projection -> (out, in)."""
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for name, (down, up) in lora.layers.items():
        for projection in PROJECTIONS:
            if name.endswith("." + projection):
                module = name[: -len(projection) - 1]
                grouped.setdefault(module, {})[projection] = (up @ down) * (scale * lora.scale)
    return grouped


@dataclass(frozen=True)
class GroupSubject:
    """One pet of a group portrait: its LoRA (bytes or loaded) and what it was trained as."""

    lora: bytes | LoadedLora
    species: str
    token: str = "sks"


def render_group(
    renderer: Renderer,
    subjects: Sequence[GroupSubject],
    *,
    layout: str,
    style: str | None = None,
    prompt: str | None = None,
    seed: int = 0,
    count: int = 1,
    steps: int = 25,
    guidance: float = 7.5,
    width: int | None = None,
    height: int | None = None,
) -> RenderResult:
    """Render several pets in one image, each pet's LoRA and prompt in its region of ``layout``."""
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    if renderer.family != "sd15":
        raise InvalidRenderRequest("group portraits need a Stable Diffusion 1.5-family base model for now")
    requests = [
        RenderRequest(
            species=s.species,
            token=s.token,
            style=style,
            prompt=prompt,
            seed=seed,
            count=count,
            steps=steps,
            guidance=guidance,
            width=width,
            height=height,
        )
        for s in subjects
    ]
    size = renderer.check(requests[0])
    region_list = region_masks(layout, len(subjects), size[1] // 8, size[0] // 8)
    prompts = [build_prompts(request) for request in requests]
    seeds = [seed + i for i in range(count)]
    pipeline = renderer.pipeline
    loras = [renderer.load_lora(s.lora) for s in subjects]
    for subject, lora in zip(subjects, loras, strict=True):
        for field_name, value in (("token", subject.token), ("species", subject.species)):
            trained = lora.metadata.get(field_name)
            if trained is not None and trained != value:
                raise InvalidRenderRequest(
                    f"a LoRA was trained with {field_name} {trained!r}, the request says {value!r}"
                )
    per_module = [lora_deltas(lora, 1.0) for lora in loras]
    with renderer._lock, torch.no_grad():
        started = time.monotonic()
        device = torch.device(renderer.device)
        guided = guidance > 1.0  # the pipeline's classifier-free guidance: the batch is [negative, positive]
        contexts = []
        for text, negative in prompts:
            positive, negative_embeds = pipeline.encode_prompt(
                text, device, count, guided, negative_prompt=negative
            )
            contexts.append(torch.cat([negative_embeds, positive]) if guided else positive)
        masks = region_list.to(device=device, dtype=renderer.dtype)
        processors: dict[str, Any] = {}
        for name, module in pipeline.unet.named_modules():
            if isinstance(module, Attention):
                deltas = [modules.get(name, {}) for modules in per_module]
                cross = module.is_cross_attention
                processors[f"{name}.processor"] = RegionalLoraAttnProcessor(
                    deltas, masks, contexts if cross else None
                )
        pipeline.unet.set_attn_processor(processors)
        try:
            output = pipeline(
                prompt_embeds=contexts[0][count:] if guided else contexts[0],
                negative_prompt_embeds=contexts[0][:count] if guided else None,
                num_images_per_prompt=1,
                width=size[0],
                height=size[1],
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
            )
        finally:
            pipeline.unet.set_attn_processor(AttnProcessor2_0())  # type: ignore[no-untyped-call]
        seconds = time.monotonic() - started
    images = list(output.images)
    if renderer.is_preview:
        images = [mark_preview(image) for image in images]
    params: dict[str, Any] = {
        "model": renderer.source,
        "family": renderer.family,
        "preview": renderer.is_preview,
        "layout": layout,
        "prompts": [text for text, _ in prompts],
        "negative_prompts": [negative for _, negative in prompts],
        "style": style,
        "free_text": prompt,
        "subjects": [
            {
                "species": s.species,
                "token": s.token,
                "lora_sha256": lora.sha256,
                "lora_metadata": dict(lora.metadata),
            }
            for s, lora in zip(subjects, loras, strict=True)
        ],
        "seed": seed,
        "seeds": seeds,
        "count": count,
        "steps": steps,
        "guidance": guidance,
        "width": size[0],
        "height": size[1],
        "seconds": round(seconds, 3),
    }
    return RenderResult(images=images, params=params, is_preview=renderer.is_preview)
