"""Render latency: images/s of our Renderer against plain diffusers pipeline calls on the same model.

Ways to serve the same requests, measured in this process, one request of each in turn, reported as one over
the median seconds per request:

- plain:            ``pipeline(...)`` on a loaded pipeline, no LoRA;
- ours:             ``Renderer.render`` with a style preset, no LoRA (what our wrapper costs);
- plain + switch:   per request ``load_lora_weights`` (pet A or B, alternately), ``pipeline(...)``,
                    ``unload_lora_weights`` (the usual diffusers way to serve many pets);
- ours + switch:    ``Renderer.render`` with pet A's or B's LoRA, alternately;
- reload + LoRA:    per request ``from_pretrained`` of the base model, then LoRA and call (what a server
                    without a kept pipeline does).

All use the same scheduler (DPM-Solver++), steps, guidance, size, prompt and seeds. The two LoRAs are
random, in the layout ``train_lora`` writes, with the default rank of the model's family.

    .venv/bin/python bench/render_latency.py                       # preview model on the CPU
    .venv/bin/python bench/render_latency.py --model /models/sd15 --device cuda --size 512 --steps 25
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from petportrait.ml.models import default_dtype, family_of, load_component, load_pipeline
from petportrait.ml.preview import ensure_preview_model, is_preview_model
from petportrait.ml.render import Renderer, RenderRequest, build_prompts
from petportrait.ml.train import FAMILY_DEFAULTS, LORA_TARGET_MODULES, lora_bytes


def random_lora(source: str, path: Path, *, rank: int, seed: int, species: str) -> Path:
    """A LoRA file with random weights for ``source``'s UNet, in train_lora's layout and metadata."""
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig

    unet = load_component(UNet2DConditionModel, source, "unet")
    torch.manual_seed(seed)
    unet.add_adapter(
        LoraConfig(
            r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=list(LORA_TARGET_MODULES)
        )
    )
    with torch.no_grad():
        for name, parameter in unet.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.02)
    metadata = {"family": family_of(source), "token": "sks", "species": species}
    path.write_bytes(lora_bytes(unet, rank=rank, alpha=rank, metadata=metadata))
    return path


def timed(run: Callable[[int], None], index: int) -> tuple[float, float]:
    """Wall seconds taken by ``run(index)`` (the device's queue included) and process CPU seconds."""
    started, started_cpu = time.perf_counter(), time.process_time()
    run(index)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started, time.process_time() - started_cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="hub id or folder; the preview model if not given")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--size", type=int, default=None, help="image side; the model's native size if not given"
    )
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--count", type=int, default=1, help="portraits of one pet per request (1 to 8)")
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--requests", type=int, default=12, help="measured requests per way")
    parser.add_argument("--reload-requests", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="petportrait-bench-") as tmp:
        source = args.model or str(ensure_preview_model(Path(tmp) / "models"))
        family = family_of(source)
        dtype = default_dtype(args.device)
        rank = FAMILY_DEFAULTS["preview" if is_preview_model(source) else family].rank
        loras = [
            random_lora(source, Path(tmp) / f"pet{i}.safetensors", rank=rank, seed=i, species="dog")
            for i in (0, 1)
        ]
        renderer = Renderer(source, args.device, dtype)
        size = args.size or renderer.native_size
        pipeline = load_pipeline(source, device=args.device, dtype=dtype)
        pipeline.scheduler = type(renderer.pipeline.scheduler).from_config(renderer.pipeline.scheduler.config)
        base = RenderRequest(
            species="dog",
            style="oil_painting",
            width=size,
            height=size,
            steps=args.steps,
            guidance=args.guidance,
            count=args.count,
        )
        prompt, negative = build_prompts(base)

        def call(target: Any, seed: int) -> None:
            target(
                prompt=prompt,
                negative_prompt=negative,
                width=size,
                height=size,
                num_inference_steps=args.steps,
                guidance_scale=args.guidance,
                num_images_per_prompt=args.count,
                generator=[torch.Generator("cpu").manual_seed(seed + k) for k in range(args.count)],
            )

        def plain(i: int) -> None:
            call(pipeline, i)

        def ours(i: int) -> None:
            renderer.render(RenderRequest(**{**base.__dict__, "seed": i}))

        def plain_switch(i: int) -> None:
            pipeline.load_lora_weights(str(loras[i % 2]), adapter_name="pet")
            call(pipeline, i)
            pipeline.unload_lora_weights()

        def ours_switch(i: int) -> None:
            renderer.render(RenderRequest(**{**base.__dict__, "seed": i, "lora_path": loras[i % 2]}))

        def reload(i: int) -> None:
            fresh = load_pipeline(source, device=args.device, dtype=dtype)
            fresh.scheduler = type(renderer.pipeline.scheduler).from_config(
                renderer.pipeline.scheduler.config
            )
            fresh.load_lora_weights(str(loras[i % 2]), adapter_name="pet")
            call(fresh, i)

        ways: dict[str, Callable[[int], None]] = {
            "plain": plain,
            "ours": ours,
            "plain + switch": plain_switch,
            "ours + switch": ours_switch,
        }
        print(
            f"model {source} ({family}), {args.device} {str(dtype).removeprefix('torch.')}, {size} px, "
            f"{args.steps} steps, {args.count} image(s) per request, {args.requests} requests per way, "
            "interleaved, "
            f"{torch.get_num_threads()} threads"
        )
        for way in ways.values():
            way(-1)  # warm-up
        seconds: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
        names = list(ways)
        for index in range(args.requests):
            # One request of each way in turn, starting from a different way each time, so that whatever
            # else the machine does falls on all of them alike.
            for name in names[index % len(names) :] + names[: index % len(names)]:
                seconds[name].append(timed(ways[name], index))
        reload_seconds = [timed(reload, index) for index in range(args.reload_requests)]

    seconds["reload + LoRA"] = reload_seconds
    for clock, label in ((0, "wall"), (1, "process CPU time")):
        if clock == 1 and args.device.startswith("cuda"):
            break
        rate = {
            name: args.count / statistics.median(s[clock] for s in values) for name, values in seconds.items()
        }
        print(f"by {label}:")
        for name, value in rate.items():
            print(f"  {name:>16}: {value:.3f} images/s (median of {len(seconds[name])} requests)")
        ratios = {
            "ours / plain (no LoRA)": rate["ours"] / rate["plain"],
            "ours + switch / plain + switch (two pets)": rate["ours + switch"] / rate["plain + switch"],
            "ours + switch / plain (no LoRA at all)": rate["ours + switch"] / rate["plain"],
            "ours + switch / reload per request": rate["ours + switch"] / rate["reload + LoRA"],
        }
        for name, value in ratios.items():
            print(f"  {name + ':':<44}{value:.2f}x")


if __name__ == "__main__":
    main()
