"""Portraits: train a pet's model, render portraits from it, and read or delete both.

The request side (API, pages, CLI) creates rows and jobs; the worker side (the handler in
portraits/runner.py) fills them in. A model lives 7 days from training, a render 30 days from rendering
(or less, as the settings say).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from petportrait.clock import utcnow
from petportrait.errors import Conflict, Gone, InvalidInput, NotFound
from petportrait.jobs import service as jobs_service
from petportrait.jobs.models import FINAL_STATES, Job, JobState
from petportrait.ml.models import NATIVE_SIZE, cuda_memory, default_base_model, native_size, pick_device
from petportrait.ml.preview import PREVIEW_MODEL_ID, PREVIEW_RESOLUTION
from petportrait.paging import PageParams, page_query
from petportrait.pets import service as pets_service
from petportrait.pets.models import Pet
from petportrait.portraits import quotas
from petportrait.portraits.models import JobKind, ModelState, PetModel, Render, RenderState
from petportrait.portraits.requests import RenderRequest
from petportrait.registry import emit, registry_of, settings_of
from petportrait.retention import policy, tombstones
from petportrait.retention.models import DeletionReason, Tombstone
from petportrait.settings import Settings
from petportrait.storage.base import BlobStore

MIN_TRAINING_PHOTOS = 2


@dataclass(frozen=True)
class BaseModelChoice:
    """Which base model new trainings use, as recorded on the model row."""

    source: str
    is_preview: bool
    resolution: int
    reason: str = "configured"  # why this model, for a person


def base_model_choice(settings: Settings, *, memory_bytes: int | None = None) -> BaseModelChoice:
    """The base model new trainings use: configured; on a GPU SDXL where its memory allows (``memory_bytes``,
    read from the device when not given), else SD 1.5; else the offline preview model."""
    configured = settings.ml.base_model
    if configured and configured != PREVIEW_MODEL_ID:
        resolution = settings.ml.resolution or native_size(configured)
        return BaseModelChoice(source=configured, is_preview=False, resolution=resolution)
    device = pick_device(settings.ml.device)
    if not configured and not device.startswith("cpu"):
        memory = memory_bytes if memory_bytes is not None else cuda_memory(device)
        source, family, reason = default_base_model(device, memory_bytes=memory)
        resolution = settings.ml.resolution or NATIVE_SIZE[family]
        return BaseModelChoice(source=source, is_preview=False, resolution=resolution, reason=reason)
    return BaseModelChoice(
        source=PREVIEW_MODEL_ID,
        is_preview=True,
        resolution=settings.ml.resolution or PREVIEW_RESOLUTION,
        reason="configured" if configured else "the preview model: no GPU",
    )


def default_render_size(model: PetModel, settings: Settings) -> int:
    """The side of a render when the request names none: the setting, else the model's native size."""
    if settings.ml.resolution:
        return settings.ml.resolution
    if model.is_preview:
        return PREVIEW_RESOLUTION
    return native_size(model.base_model)


def model_expired(model: PetModel, now: datetime | None = None, *, settings: Settings) -> bool:
    """Whether a trained model has passed its period (it is then hidden and its weights deleted)."""
    return policy.is_expired(model, now, settings=settings)


def render_expired(render: Render, now: datetime | None = None, *, settings: Settings) -> bool:
    """Whether a render has passed its period."""
    return policy.is_expired(render, now, settings=settings)


def current_job(session: Session, *, kind: JobKind, target_id: str) -> Job | None:
    """The newest job of a kind for a target."""
    return session.scalars(
        select(Job)
        .where(Job.kind == kind.value, Job.target_id == target_id)
        .order_by(Job.created_at.desc())
        .limit(1)
    ).first()


def _live_photo_ids(session: Session, *, pet: Pet) -> list[str]:
    return [p.id for p in pets_service.list_photos(session, owner_id=pet.owner_id, pet_id=pet.id)]


def _new_training(
    session: Session, *, pet: Pet, settings: Settings, retrained_from: str | None
) -> tuple[PetModel, Job]:
    photo_ids = _live_photo_ids(session, pet=pet)
    if len(photo_ids) < MIN_TRAINING_PHOTOS:
        if retrained_from is not None:
            raise Gone(
                f"This model passed its retention period ({policy.days('model', settings)}) and the photos "
                f"it was trained on are gone too (photos are kept {policy.days('photo', settings)}). Upload "
                f"at least {MIN_TRAINING_PHOTOS} new photos and train again.",
                code="model_and_photos_expired",
            )
        raise InvalidInput(
            f"Training needs at least {MIN_TRAINING_PHOTOS} photos of the pet; it has {len(photo_ids)}.",
            code="not_enough_photos",
        )
    choice = base_model_choice(settings)
    model = PetModel(
        pet_id=pet.id,
        owner_id=pet.owner_id,
        state=ModelState.QUEUED.value,
        base_model=choice.source,
        is_preview=choice.is_preview,
        token="sks",
        species=pet.species,
        photo_ids=photo_ids,
        retrained_from=retrained_from,
        created_at=utcnow(),
    )
    session.add(model)
    session.flush()
    job = jobs_service.create_job(
        session,
        kind=JobKind.TRAIN,
        owner_id=pet.owner_id,
        target_id=model.id,
        max_attempts=settings.queue.max_attempts,
    )
    return model, job


def request_training(
    session: Session, *, owner_id: str, pet_id: str, settings: Settings
) -> tuple[PetModel, Job]:
    """Queue the training of a new model of the pet from its current photos."""
    pet = pets_service.get_pet(session, owner_id=owner_id, pet_id=pet_id)
    busy = session.scalar(
        select(PetModel.id).where(
            PetModel.pet_id == pet.id,
            PetModel.state.in_([ModelState.QUEUED.value, ModelState.TRAINING.value]),
        )
    )
    if busy is not None:
        raise Conflict(
            "A model of this pet is already being trained; wait for it or cancel its job.",
            code="training_in_progress",
            model_id=busy,
        )
    quotas.ensure_training_room(session, owner_id=owner_id, settings=settings)
    return _new_training(session, pet=pet, settings=settings, retrained_from=None)


def get_model(
    session: Session, *, owner_id: str, model_id: str, settings: Settings, allow_expired: bool = False
) -> PetModel:
    """The owner's model; 404 for another person's; 410 once expired (unless allow_expired)."""
    model = session.get(PetModel, model_id)
    if model is None or model.owner_id != owner_id:
        raise NotFound("No such model.", code="model_not_found")
    if not allow_expired and model_expired(model, settings=settings):
        raise Gone(
            f"This model passed its retention period ({policy.days('model', settings)}) and its weights "
            "were deleted. Asking it for a render trains it again from the pet's photos while they exist.",
            code="model_expired",
        )
    return model


def list_models(session: Session, *, owner_id: str, pet_id: str, settings: Settings) -> list[PetModel]:
    """A pet's models that have not expired, newest first."""
    pets_service.get_pet(session, owner_id=owner_id, pet_id=pet_id)
    query = (
        select(PetModel)
        .where(PetModel.pet_id == pet_id, policy.live_clause(PetModel, settings=settings))
        .order_by(PetModel.created_at.desc())
    )
    return list(session.scalars(query))


@dataclass
class RenderPlan:
    """What a render request produced."""

    model: PetModel
    renders: list[Render]
    job: Job
    retraining: bool
    training_job: Job | None
    notice: str | None

    @property
    def to_enqueue(self) -> list[str]:
        first = self.training_job if self.training_job is not None and self.retraining else self.job
        return [first.id] if first.waits_for is None and first.state == JobState.QUEUED.value else []


def _pet_of_swept_model(session: Session, *, owner_id: str, model_id: str) -> Pet:
    """The pet of a model the sweeper deleted when it expired (its tombstone names the pet); 404 for any
    other missing model, as for another person's."""
    stone = session.get(Tombstone, model_id)
    if (
        stone is None
        or stone.kind != "model"
        or stone.owner_id != owner_id
        or stone.reason != DeletionReason.EXPIRED.value
        or stone.pet_id is None
    ):
        raise NotFound("No such model.", code="model_not_found")
    return pets_service.get_pet(session, owner_id=owner_id, pet_id=stone.pet_id)


def request_render(
    session: Session, *, owner_id: str, model_id: str, request: RenderRequest, settings: Settings
) -> RenderPlan:
    """Queue the renders a request asks for (checked here, whichever door it came through); an expired
    model is retrained first from the pet's photos."""
    request = request.checked(settings, registry_of(session).prompt_screens.values())
    found = session.get(PetModel, model_id)
    if found is None or found.owner_id != owner_id:
        # Swept after it expired: its weights are gone, and its tombstone says which pet it was of.
        pet = _pet_of_swept_model(session, owner_id=owner_id, model_id=model_id)
        expired = True
    else:
        pet = pets_service.get_pet(session, owner_id=owner_id, pet_id=found.pet_id)
        expired = model_expired(found, settings=settings)
    quotas.ensure_render_room(session, owner_id=owner_id, adding=request.count, settings=settings)
    retraining = False
    training_job: Job | None = None
    notice: str | None = None
    count, seed = request.count, request.seed
    if expired:
        quotas.ensure_training_room(session, owner_id=owner_id, settings=settings)
        model, training_job = _new_training(session, pet=pet, settings=settings, retrained_from=model_id)
        retraining = True
        notice = (
            f"The model you asked for passed its retention period ({policy.days('model', settings)}) and "
            "was deleted, so it is being trained again from your pet's photos first; the portraits follow "
            "when training ends."
        )
    else:
        assert found is not None
        model = found
    quotas.check_render_params(model, steps=request.steps, width=request.width, height=request.height)
    if not retraining and model.state in (ModelState.QUEUED.value, ModelState.TRAINING.value):
        training_job = current_job(session, kind=JobKind.TRAIN, target_id=model.id)
    elif not retraining and model.state != ModelState.READY.value:
        raise Conflict(
            f"This model cannot render: its training {model.state}. Train a new model of the pet.",
            code="model_not_ready",
        )
    choice_resolution = default_render_size(model, settings)
    base_seed = seed if seed is not None else secrets.randbelow(2**31 - count)
    now = utcnow()
    renders = []
    for position in range(count):
        render = Render(
            model_id=model.id,
            pet_id=model.pet_id,
            owner_id=owner_id,
            position=position,
            state=RenderState.QUEUED.value,
            style=request.style,
            prompt=request.prompt,
            seed=(base_seed + position) % (2**31),
            width=request.width or choice_resolution,
            height=request.height or choice_resolution,
            is_preview=model.is_preview,
            params={
                "negative_prompt": request.negative_prompt,
                "steps": request.steps,
                "guidance": request.guidance,
            },
            created_at=now,
        )
        session.add(render)
        renders.append(render)
    session.flush()
    waits_for = (
        training_job.id if training_job is not None and training_job.state not in FINAL_STATES else None
    )
    job = jobs_service.create_job(
        session,
        kind=JobKind.RENDER,
        owner_id=owner_id,
        target_id=model.id,
        max_attempts=settings.queue.max_attempts,
        payload={"render_ids": [r.id for r in renders]},
        waits_for=waits_for,
    )
    for render in renders:
        render.job_id = job.id
    session.flush()
    return RenderPlan(
        model=model, renders=renders, job=job, retraining=retraining, training_job=training_job, notice=notice
    )


def get_render(session: Session, *, owner_id: str, render_id: str, settings: Settings) -> Render:
    """The owner's render; 404 for another person's; 410 once past its period."""
    render = session.get(Render, render_id)
    if render is None or render.owner_id != owner_id:
        raise NotFound("No such render.", code="render_not_found")
    policy.ensure_live(render, settings=settings)
    return render


def page_models(
    session: Session, *, owner_id: str, pet_id: str, page: PageParams
) -> tuple[list[PetModel], str | None]:
    """One page of a pet's models that have not expired, newest first."""
    pets_service.get_pet(session, owner_id=owner_id, pet_id=pet_id)
    query = select(PetModel).where(
        PetModel.pet_id == pet_id, policy.live_clause(PetModel, settings=settings_of(session))
    )
    return page_query(session, query, stamp=PetModel.created_at, ident=PetModel.id, page=page)


def page_renders(
    session: Session, *, owner_id: str, page: PageParams, pet_id: str | None = None
) -> tuple[list[Render], str | None]:
    """One page of the owner's renders that have not expired, newest first."""
    query = select(Render).where(
        Render.owner_id == owner_id, policy.live_clause(Render, settings=settings_of(session))
    )
    if pet_id is not None:
        query = query.where(Render.pet_id == pet_id)
    return page_query(session, query, stamp=Render.created_at, ident=Render.id, page=page)


def list_renders(
    session: Session, *, owner_id: str, settings: Settings, pet_id: str | None = None
) -> list[Render]:
    """The owner's renders that have not expired, newest first."""
    query = select(Render).where(Render.owner_id == owner_id, policy.live_clause(Render, settings=settings))
    if pet_id is not None:
        query = query.where(Render.pet_id == pet_id)
    return list(session.scalars(query.order_by(Render.created_at.desc(), Render.position)))


def delete_model(session: Session, *, blobs: BlobStore, owner_id: str, model_id: str) -> None:
    """Delete the owner's model now (weights first, then a tombstone and receipt); its renders stay."""
    model = session.get(PetModel, model_id)
    if model is not None and model.owner_id == owner_id:
        job = current_job(session, kind=JobKind.TRAIN, target_id=model.id)
        if job is not None and job.state not in FINAL_STATES:
            jobs_service.request_cancel(session, job=job)
            reflect_job_end(session, job=job)
    tombstones.delete_now(
        session, blobs=blobs, kind="model", item_id=model_id, owner_id=owner_id, actor_id=owner_id
    )


def delete_render(session: Session, *, blobs: BlobStore, owner_id: str, render_id: str) -> None:
    """Delete the owner's render now (image first, then a tombstone and receipt)."""
    tombstones.delete_now(
        session, blobs=blobs, kind="render", item_id=render_id, owner_id=owner_id, actor_id=owner_id
    )


def reflect_job_end(session: Session, *, job: Job) -> None:
    """Carry a job's failure or cancellation onto its model or renders (and onto jobs that waited for it)."""
    session.refresh(job)
    jobs = [job]
    pending = [job.id]
    while pending:
        waiters = list(session.scalars(select(Job).where(Job.waits_for.in_(pending))))
        jobs.extend(waiters)
        pending = [w.id for w in waiters]
    for each in jobs:
        if each.state not in ("failed", "cancelled"):
            continue
        if each.kind == JobKind.TRAIN.value:
            model = session.get(PetModel, each.target_id)
            if (
                model is not None
                and model.owner_id == each.owner_id  # a job never changes another account's model
                and model.state in (ModelState.QUEUED.value, ModelState.TRAINING.value)
            ):
                model.state = (
                    ModelState.FAILED.value if each.state == "failed" else ModelState.CANCELLED.value
                )
                if each.state == "failed":
                    emit(
                        session,
                        "model.failed",
                        owner_id=model.owner_id,
                        model_id=model.id,
                        pet_id=model.pet_id,
                        error_code=each.error_code,
                    )
        else:
            for render_id in each.payload.get("render_ids", []):
                render = session.get(Render, str(render_id))
                if render is not None and render.state in (
                    RenderState.QUEUED.value,
                    RenderState.RENDERING.value,
                ):
                    render.state = (
                        RenderState.FAILED.value if each.state == "failed" else RenderState.CANCELLED.value
                    )
                    if each.state == "failed":
                        emit(
                            session,
                            "render.failed",
                            owner_id=render.owner_id,
                            render_id=render.id,
                            model_id=render.model_id,
                            error_code=each.error_code,
                        )
    session.flush()


def expiry_for_model(settings: Settings, trained_at: datetime) -> datetime:
    """When a model trained at `trained_at` expires."""
    return policy.expires_at("model", trained_at, settings=settings)


def expiry_for_render(settings: Settings, rendered_at: datetime) -> datetime:
    """When a render made at `rendered_at` expires."""
    return policy.expires_at("render", rendered_at, settings=settings)
