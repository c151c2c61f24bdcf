"""Group portraits: the region masks, each LoRA acting in its own region only (tested on the attention
layer itself), and a two-pet render on the preview model."""

from __future__ import annotations

import pytest
import torch

from petportrait.ml.regions import (
    GroupSubject,
    RegionalLoraAttnProcessor,
    region_masks,
    render_group,
)
from petportrait.ml.render import InvalidRenderRequest, Renderer
from petportrait.ml.train import TrainedLora


def test_the_layouts_partition_the_image() -> None:
    for layout in ("side_by_side", "front_back"):
        for count in (2, 3):
            masks = region_masks(layout, count, 8, 12)
            assert masks.shape == (count, 8, 12) and torch.all(masks.sum(dim=0) == 1)
            assert all(mask.sum() > 0 for mask in masks)
    side = region_masks("side_by_side", 2, 4, 4)
    assert torch.all(side[0, :, :2] == 1) and torch.all(side[1, :, 2:] == 1)
    with pytest.raises(InvalidRenderRequest, match="layout"):
        region_masks("pyramid", 2, 4, 4)
    with pytest.raises(InvalidRenderRequest, match="2 to 3 pets"):
        region_masks("side_by_side", 4, 4, 4)


def _attention_and_loras(
    cross: bool,
) -> tuple[torch.nn.Module, list[dict[str, torch.Tensor]], list[torch.Tensor]]:
    from diffusers.models.attention_processor import Attention

    torch.manual_seed(0)
    attn = Attention(query_dim=16, cross_attention_dim=8 if cross else None, heads=2, dim_head=8).eval()
    deltas = [
        {
            name: torch.randn(
                getattr(attn, name.split(".")[0])[0].weight.shape
                if name == "to_out.0"
                else getattr(attn, name).weight.shape
            )
            * 0.5
            for name in ("to_q", "to_k", "to_v", "to_out.0")
        }
        for _ in range(2)
    ]
    contexts = [torch.randn(1, 5, 8), torch.randn(1, 5, 8)]
    return attn, deltas, contexts


@pytest.mark.parametrize("cross", [True, False])
def test_each_lora_acts_in_its_region_only(cross: bool) -> None:
    attn, deltas, contexts = _attention_and_loras(cross)
    hidden = torch.randn(1, 16, 16)  # a 4x4 latent, 16 channels
    masks = region_masks("side_by_side", 2, 4, 4)
    context = contexts[0] if cross else None
    with torch.no_grad():
        both = RegionalLoraAttnProcessor(deltas, masks, contexts if cross else None)(attn, hidden, context)
        alone = [
            RegionalLoraAttnProcessor([deltas[i]], torch.ones(1, 4, 4), [contexts[i]] if cross else None)(
                attn, hidden, contexts[i] if cross else None
            )
            for i in range(2)
        ]
        plain = RegionalLoraAttnProcessor([{}], torch.ones(1, 4, 4), None)(attn, hidden, context)
    left = masks[0].reshape(-1).bool()
    assert torch.allclose(both[0, left], alone[0][0, left], atol=1e-5)  # pet 1's LoRA on the left
    assert torch.allclose(both[0, ~left], alone[1][0, ~left], atol=1e-5)  # pet 2's on the right
    assert not torch.allclose(alone[0][0, ~left], both[0, ~left], atol=1e-3)  # pet 1 does not reach it
    assert not torch.allclose(both, plain, atol=1e-3)
    if cross:  # with no LoRA, the processor computes what diffusers' own does
        from diffusers.models.attention_processor import AttnProcessor2_0

        reference = AttnProcessor2_0()(attn, hidden, contexts[0])
        mine = RegionalLoraAttnProcessor([{}], torch.ones(1, 4, 4), [contexts[0]])(attn, hidden, contexts[0])
        assert torch.allclose(reference, mine, atol=1e-5)


def test_two_pets_render_in_one_portrait_on_the_preview_model(
    renderer: Renderer, pet_loras: dict[str, TrainedLora]
) -> None:
    subjects = [
        GroupSubject(lora=pet_loras["cat"].data, species="cat"),
        GroupSubject(lora=pet_loras["dog"].data, species="dog"),
    ]
    result = render_group(renderer, subjects, layout="side_by_side", style="oil_painting", steps=2, count=1)
    assert len(result.images) == 1 and result.is_preview
    assert [s["lora_sha256"] for s in result.params["subjects"]] == [
        __import__("hashlib").sha256(pet_loras[k].data).hexdigest() for k in ("cat", "dog")
    ]
    assert "sks cat" in result.params["prompts"][0] and "sks dog" in result.params["prompts"][1]
    # the renderer is left as it was: a plain render afterwards uses diffusers' processor again
    from diffusers.models.attention_processor import AttnProcessor2_0

    assert all(isinstance(p, AttnProcessor2_0) for p in renderer.pipeline.unet.attn_processors.values())
    with pytest.raises(InvalidRenderRequest, match="species"):
        render_group(
            renderer,
            [subjects[0], GroupSubject(lora=pet_loras["dog"].data, species="cat")],
            layout="side_by_side",
            style="oil_painting",
            steps=1,
        )
