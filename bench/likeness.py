"""Likeness of a pet's LoRA on a real base model, by DreamBench's protocol, with and without subject masks.

For each photo folder given: train a LoRA masked (background weight --background) and unmasked, render
DreamBench's 25 live-subject prompts (--per-prompt each), and print DINO, CLIP-I and CLIP-T against the
folder's photos, next to the real photos scored against each other (the ceiling; DreamBench reports 0.774
DINO and 0.885 CLIP-I for that, and DreamBooth on SD 0.668 / 0.803 / 0.305).

    .venv/bin/python bench/likeness.py --device cuda \\
        --model stabilityai/stable-diffusion-xl-base-1.0 \\
        --dino facebook/dino-vits16 --clip openai/clip-vit-base-patch32 \\
        ../shared/data/dreambooth-pets/dog ../shared/data/dreambooth-pets/cat

Everything stays in memory; nothing is written but what it prints.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from petportrait.ml.likeness import DREAMBENCH_PROMPTS, Embedders, score_likeness
from petportrait.ml.photos import load_photo
from petportrait.ml.render import Renderer, RenderRequest
from petportrait.ml.train import CLASS_NOUNS, TrainSpec, train_lora

SUFFIXES = {".jpg", ".jpeg", ".png"}


def real_against_real(embedders: Embedders, photos: list) -> tuple[float, float]:
    """Mean DINO and CLIP-I similarity of each photo with every other (the ceiling a model can reach)."""
    dino, clip = embedders.dino_embeddings(photos), embedders.clip_image_embeddings(photos)
    off_diagonal = ~torch.eye(len(photos), dtype=torch.bool)
    return float((dino @ dino.T)[off_diagonal].mean()), float((clip @ clip.T)[off_diagonal].mean())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folders", type=Path, nargs="+", help="one folder of photos per pet")
    parser.add_argument("--model", required=True, help="base model hub id or folder")
    parser.add_argument("--dino", required=True, help="DINO ViT hub id or folder (DreamBench: dino-vits16)")
    parser.add_argument("--clip", required=True, help="CLIP hub id or folder (DreamBench: ViT-B/32)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--species", default=None, help="dog or cat (default: from the folder's name)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the family's)")
    parser.add_argument("--resolution", type=int, default=None)
    parser.add_argument("--background", type=float, default=0.1, help="masked loss background weight")
    parser.add_argument("--per-prompt", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=len(DREAMBENCH_PROMPTS))
    parser.add_argument("--render-steps", type=int, default=50)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()

    embedders = Embedders.from_pretrained(args.dino, args.clip)
    renderer = Renderer(args.model, args.device)
    results = []
    for folder in args.folders:
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
        species = args.species or ("cat" if "cat" in folder.name else "dog")
        photos = [load_photo(p) for p in paths]
        real_dino, real_clip = real_against_real(embedders, photos)
        row: dict[str, object] = {"pet": folder.name, "photos": len(paths), "real_dino": real_dino}
        row["real_clip_i"] = real_clip
        for label, weight in (("masked", args.background), ("plain", None)):
            started = time.monotonic()
            trained = train_lora(
                TrainSpec(
                    base_model=args.model,
                    photos=paths,
                    species=species,
                    steps=args.steps,
                    resolution=args.resolution,
                    device=args.device,
                    mask_background_weight=weight,
                    gradient_checkpointing=args.gradient_checkpointing,
                )
            )
            train_seconds = time.monotonic() - started

            def render(
                prompt: str, count: int, seed: int, lora: bytes = trained.data, species: str = species
            ) -> list:
                request = RenderRequest(
                    species=species, lora=lora, prompt=prompt, seed=seed, count=count, steps=args.render_steps
                )
                return renderer.render(request).images

            score = score_likeness(
                embedders=embedders,
                render=render,
                photos=photos,
                token="sks",
                class_noun=CLASS_NOUNS[species],
                prompts=DREAMBENCH_PROMPTS[: args.prompts],
                per_prompt=args.per_prompt,
            )
            row[label] = {**score.as_dict(), "train_seconds": round(train_seconds, 1)}
        results.append(row)
        print(json.dumps(row), flush=True)
    print("pet        real DINO/CLIP-I   masked DINO/CLIP-I/CLIP-T   plain DINO/CLIP-I/CLIP-T")
    for row in results:
        masked, plain = row["masked"], row["plain"]
        assert isinstance(masked, dict) and isinstance(plain, dict)
        print(
            f"{row['pet']:<10} {row['real_dino']:.3f}/{row['real_clip_i']:.3f}      "
            f"{masked['dino']:.3f}/{masked['clip_i']:.3f}/{masked['clip_t']:.3f}         "
            f"{plain['dino']:.3f}/{plain['clip_i']:.3f}/{plain['clip_t']:.3f}"
        )


if __name__ == "__main__":
    main()
