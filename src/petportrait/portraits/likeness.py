"""Scoring a pet model's likeness (``petportrait eval MODEL_ID``): render DreamBench's prompts with the model
and compare the renders with the pet's photos; the scores are kept on the model (they end with it)."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from petportrait.errors import Conflict, NotFound
from petportrait.pets import service as pets_service
from petportrait.portraits.models import ModelState, PetModel
from petportrait.settings import Settings
from petportrait.storage.base import BlobStore

log = logging.getLogger(__name__)


def evaluate_model(
    session: Session,
    *,
    blobs: BlobStore,
    settings: Settings,
    model_id: str,
    per_prompt: int = 4,
    prompt_count: int | None = None,
    steps: int = 50,
    seed: int = 0,
) -> dict[str, float | int]:
    """Score a ready model with DreamBench's protocol and store the scores on it; LikenessUnavailable (from
    ``petportrait.ml.likeness``) says why when the embedding models are not configured."""
    from petportrait.ml.likeness import DREAMBENCH_PROMPTS, Embedders, score_likeness
    from petportrait.ml.photos import load_photo
    from petportrait.ml.render import RenderRequest
    from petportrait.ml.train import CLASS_NOUNS
    from petportrait.portraits.runner import PortraitEngine

    embedders = Embedders.from_pretrained(settings.ml.likeness_dino, settings.ml.likeness_clip)
    model = session.get(PetModel, model_id)
    if model is None:
        raise NotFound("No such model.", code="model_not_found")
    if model.state != ModelState.READY.value or model.storage_key is None:
        raise Conflict(f"The model is not ready (it is {model.state}).", code="model_not_ready")
    lora = blobs.get_bytes(model.storage_key)
    photos = [
        load_photo(data)
        for data in pets_service.read_photos_for_likeness(
            session, blobs=blobs, pet_id=model.pet_id, photo_ids=list(model.photo_ids)
        )
    ]
    session.commit()  # the reads are on record before the work
    renderer: Any = PortraitEngine(settings).renderer(model.base_model)
    species, token = model.species, model.token

    def render(prompt: str, count: int, first_seed: int) -> list[Any]:
        request = RenderRequest(
            species=species, lora=lora, token=token, prompt=prompt, seed=first_seed, count=count, steps=steps
        )
        return list(renderer.render(request).images)

    prompts = DREAMBENCH_PROMPTS[: prompt_count or len(DREAMBENCH_PROMPTS)]
    score = score_likeness(
        embedders=embedders,
        render=render,
        photos=photos,
        token=token,
        class_noun=CLASS_NOUNS[species],
        prompts=prompts,
        per_prompt=per_prompt,
        seed=seed,
    ).as_dict()
    del photos
    model = session.get(PetModel, model_id, populate_existing=True)
    if model is not None:
        model.likeness = score
        session.commit()
    log.info("likeness of model %s measured", model_id)
    return score
