"""A likeness score for a pet's model, by DreamBench's protocol (Ruiz et al., 2023, DreamBooth section 4.1).

Renders of the model for DreamBench's live-subject prompts are compared with the pet's own photos:

- DINO: mean cosine similarity of the ViT CLS embeddings of each render and each photo (DreamBench uses
  DINO ViT-S/16, ``facebook/dino-vits16``); subject fidelity, and it tells two animals of one breed apart.
- CLIP-I: the same with CLIP image embeddings (DreamBench: ViT-B/32, ``openai/clip-vit-base-patch32``).
- CLIP-T: mean cosine similarity of each render's CLIP image embedding and its prompt (the identifier left
  out); prompt fidelity.

For comparison (the paper's table 1): DreamBooth on Stable Diffusion reaches DINO 0.668, CLIP-I 0.803,
CLIP-T 0.305; real photos of a subject against each other score DINO 0.774, CLIP-I 0.885.

The embedding models come from settings (``PETPORTRAIT__ML__LIKENESS_DINO``, ``..._LIKENESS_CLIP``: hub ids
or folders, loaded with ``from_pretrained``); there is none by default, and then the score is absent and says
why. Photos and renders stay in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

# DreamBench's 25 prompts for live subjects; {0} is the identifier (e.g. "sks"), {1} the class noun.
DREAMBENCH_PROMPTS: tuple[str, ...] = (
    "a {0} {1} in the jungle",
    "a {0} {1} in the snow",
    "a {0} {1} on the beach",
    "a {0} {1} on a cobblestone street",
    "a {0} {1} on top of pink fabric",
    "a {0} {1} on top of a wooden floor",
    "a {0} {1} with a city in the background",
    "a {0} {1} with a mountain in the background",
    "a {0} {1} with a blue house in the background",
    "a {0} {1} on top of a purple rug in a forest",
    "a {0} {1} wearing a red hat",
    "a {0} {1} wearing a santa hat",
    "a {0} {1} wearing a rainbow scarf",
    "a {0} {1} wearing a black top hat and a monocle",
    "a {0} {1} in a chef outfit",
    "a {0} {1} in a firefighter outfit",
    "a {0} {1} in a police outfit",
    "a {0} {1} wearing pink glasses",
    "a {0} {1} wearing a yellow shirt",
    "a {0} {1} in a purple wizard outfit",
    "a red {0} {1}",
    "a purple {0} {1}",
    "a shiny {0} {1}",
    "a wet {0} {1}",
    "a cube shaped {0} {1}",
)
DREAMBENCH_DINO = "facebook/dino-vits16"
DREAMBENCH_CLIP = "openai/clip-vit-base-patch32"
SETTINGS_HINT = (
    "set PETPORTRAIT__ML__LIKENESS_DINO and PETPORTRAIT__ML__LIKENESS_CLIP to the embedding models' hub ids "
    f"or folders (DreamBench uses {DREAMBENCH_DINO} and {DREAMBENCH_CLIP})"
)


class LikenessUnavailable(RuntimeError):
    """No likeness score can be made here; the message says why and what to set."""


@dataclass
class Embedders:
    """DINO (a ViT: CLS token) and CLIP (image and text towers), each with its processor, on the CPU."""

    dino: Any = field(repr=False)
    dino_processor: Any = field(repr=False)
    clip: Any = field(repr=False)
    clip_processor: Any = field(repr=False)

    @classmethod
    def from_pretrained(cls, dino: str | None, clip: str | None) -> Embedders:
        """Load both models (hub ids or folders); LikenessUnavailable says which is missing or broken."""
        from transformers import AutoImageProcessor, AutoModel, CLIPModel, CLIPProcessor

        missing = [name for name, value in (("DINO", dino), ("CLIP", clip)) if not value]
        if missing or dino is None or clip is None:
            raise LikenessUnavailable(
                f"no {' or '.join(missing)} embedding model is configured; {SETTINGS_HINT}"
            )
        try:
            loaded = cls(
                dino=AutoModel.from_pretrained(dino).eval(),
                dino_processor=AutoImageProcessor.from_pretrained(dino),  # type: ignore[no-untyped-call]
                clip=CLIPModel.from_pretrained(clip).eval(),  # type: ignore[no-untyped-call]
                clip_processor=CLIPProcessor.from_pretrained(clip),
            )
        except (OSError, ValueError, KeyError) as exc:
            raise LikenessUnavailable(
                f"an embedding model could not be loaded ({type(exc).__name__}: {exc}); {SETTINGS_HINT}"
            ) from exc
        return loaded

    @torch.no_grad()
    def dino_embeddings(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Unit-length DINO CLS embeddings, (N, dim)."""
        inputs = self.dino_processor(images=[i.convert("RGB") for i in images], return_tensors="pt")
        cls_token = self.dino(**inputs).last_hidden_state[:, 0]
        return torch.nn.functional.normalize(cls_token.float(), dim=-1)

    @torch.no_grad()
    def clip_image_embeddings(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Unit-length CLIP image embeddings, (N, dim)."""
        inputs = self.clip_processor(images=[i.convert("RGB") for i in images], return_tensors="pt")
        features = self.clip.get_image_features(pixel_values=inputs["pixel_values"])
        features = getattr(features, "pooler_output", features)
        return torch.nn.functional.normalize(features.float(), dim=-1)

    @torch.no_grad()
    def clip_text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-length CLIP text embeddings, (N, dim)."""
        inputs = self.clip_processor(text=list(texts), return_tensors="pt", padding=True, truncation=True)
        features = self.clip.get_text_features(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
        )
        features = getattr(features, "pooler_output", features)
        return torch.nn.functional.normalize(features.float(), dim=-1)


@dataclass(frozen=True)
class LikenessScore:
    """DreamBench's three numbers for one model, and what they were measured on."""

    dino: float
    clip_i: float
    clip_t: float
    renders: int
    photos: int
    prompts: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "dino": round(self.dino, 4),
            "clip_i": round(self.clip_i, 4),
            "clip_t": round(self.clip_t, 4),
            "renders": self.renders,
            "photos": self.photos,
            "prompts": self.prompts,
        }


# Renders one prompt ``count`` times from ``seed`` on: the caller's renderer with the model's LoRA applied.
RenderFunction = Callable[[str, int, int], list[Image.Image]]


def score_likeness(
    *,
    embedders: Embedders,
    render: RenderFunction,
    photos: Sequence[Image.Image],
    token: str,
    class_noun: str,
    prompts: Sequence[str] = DREAMBENCH_PROMPTS,
    per_prompt: int = 4,
    seed: int = 0,
) -> LikenessScore:
    """Render every prompt ``per_prompt`` times and score the renders against ``photos`` (DreamBench)."""
    if not photos:
        raise LikenessUnavailable("the pet has no photos left to compare the renders with")
    real_dino = embedders.dino_embeddings(photos)
    real_clip = embedders.clip_image_embeddings(photos)
    dino_scores, clip_i_scores, clip_t_scores = [], [], []
    renders = 0
    for number, template in enumerate(prompts):
        images = render(template.format(token, class_noun), per_prompt, seed + number * per_prompt)
        renders += len(images)
        text = embedders.clip_text_embeddings([template.format("", class_noun).replace("  ", " ").strip()])
        fake_clip = embedders.clip_image_embeddings(images)
        dino_scores.append(embedders.dino_embeddings(images) @ real_dino.T)
        clip_i_scores.append(fake_clip @ real_clip.T)
        clip_t_scores.append(fake_clip @ text.T)
    return LikenessScore(
        dino=float(torch.cat(dino_scores).mean()),
        clip_i=float(torch.cat(clip_i_scores).mean()),
        clip_t=float(torch.cat(clip_t_scores).mean()),
        renders=renders,
        photos=len(photos),
        prompts=len(prompts),
    )
