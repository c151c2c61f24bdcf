"""Bounded work per account: images waiting or rendering, trainings running, and render steps and sizes
bounded by the base model's family. The portraits service calls these, so every door (API, pages, CLI)
gets the same limits.

Beyond a quota the answer is 429 problem+json with Retry-After and a sentence; a step count or a size
outside the family's range is 422 with a code.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from petportrait.errors import InvalidInput, TooManyRequests
from petportrait.portraits.models import ModelState, PetModel, Render, RenderState
from petportrait.settings import Settings

PENDING_RENDER_STATES = (RenderState.QUEUED.value, RenderState.RENDERING.value)
RUNNING_TRAINING_STATES = (ModelState.QUEUED.value, ModelState.TRAINING.value)


@dataclass(frozen=True)
class FamilyLimits:
    """What a base model family may be asked for: steps, and the side of an image in pixels."""

    family: str
    max_steps: int
    min_side: int
    max_side: int


FAMILY_LIMITS = {
    "sd15": FamilyLimits("sd15", max_steps=50, min_side=256, max_side=768),
    "sdxl": FamilyLimits("sdxl", max_steps=50, min_side=512, max_side=1536),
    # The offline preview model is tiny and CPU-bound: small images, few steps.
    "preview": FamilyLimits("preview", max_steps=50, min_side=64, max_side=512),
}


def family_limits(model: PetModel) -> FamilyLimits:
    """The limits of the model's base family (from the model row: preview, SDXL, else SD 1.5)."""
    if model.is_preview:
        return FAMILY_LIMITS["preview"]
    return FAMILY_LIMITS["sdxl" if "xl" in model.base_model.lower() else "sd15"]


def check_render_params(model: PetModel, *, steps: int | None, width: int | None, height: int | None) -> None:
    """Refuse steps over the family's maximum and sides outside its range (422 with a code)."""
    limits = family_limits(model)
    if steps is not None and steps > limits.max_steps:
        raise InvalidInput(
            f"This model ({limits.family}) renders with at most {limits.max_steps} steps; "
            f"{steps} were asked.",
            code="render_steps_too_many",
            max_steps=limits.max_steps,
        )
    for name, side in (("width", width), ("height", height)):
        if side is not None and not limits.min_side <= side <= limits.max_side:
            raise InvalidInput(
                f"This model ({limits.family}) renders images from {limits.min_side} to {limits.max_side} "
                f"pixels a side; the {name} asked was {side}.",
                code="render_size_out_of_range",
                min_side=limits.min_side,
                max_side=limits.max_side,
            )


def pending_images(session: Session, *, owner_id: str) -> int:
    """How many of the account's images are waiting or rendering."""
    count = session.scalar(
        select(func.count())
        .select_from(Render)
        .where(Render.owner_id == owner_id, Render.state.in_(PENDING_RENDER_STATES))
    )
    return count or 0


def ensure_render_room(session: Session, *, owner_id: str, adding: int, settings: Settings) -> None:
    """Refuse (429) a request that would take the account past its images waiting or rendering."""
    limit = settings.quotas.images_pending_per_account
    pending = pending_images(session, owner_id=owner_id)
    if pending + adding > limit:
        raise TooManyRequests(
            f"An account may have {limit} images waiting or rendering at once; {pending} are now, and this "
            f"request asks for {adding} more. Wait for some to finish (or cancel them) and ask again.",
            code="render_quota_exceeded",
            headers={"Retry-After": str(settings.quotas.retry_after_seconds)},
            limit=limit,
            pending=pending,
        )


def ensure_training_room(session: Session, *, owner_id: str, settings: Settings) -> None:
    """Refuse (429) a training beyond the account's trainings waiting or running."""
    limit = settings.quotas.trainings_running_per_account
    running = (
        session.scalar(
            select(func.count())
            .select_from(PetModel)
            .where(PetModel.owner_id == owner_id, PetModel.state.in_(RUNNING_TRAINING_STATES))
        )
        or 0
    )
    if running >= limit:
        raise TooManyRequests(
            f"An account may train {limit} models at once and {running} are waiting or training now. Wait "
            "for one to finish (or cancel it) and ask again.",
            code="training_quota_exceeded",
            headers={"Retry-After": str(settings.quotas.retry_after_seconds)},
            limit=limit,
            running=running,
        )
