"""The worker side of portraits: the handlers of training and render jobs (registered by `register`).

Outputs are written under keys derived from the job and its attempt
(`models/{owner}/{job}/a{attempt}/{model}.safetensors`, `renders/{owner}/{job}/a{attempt}/{render}.png`),
so a retry never doubles them, and a dead attempt's partial outputs can be found and removed.

Nothing derived from a photo touches the worker's disk: photos are read into memory, training returns the
LoRA as bytes, and rendering reads the LoRA from the blob's bytes. Each write of a model or render row is
fenced (`_fence_write`) in its own transaction: a job cancelled, or whose owner was erased, writes nothing.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from petportrait.clock import utcnow
from petportrait.jobs import service as jobs_service
from petportrait.jobs.models import Job, JobState
from petportrait.jobs.runner import Beat, JobFailed, JobStopped, WorkerContext
from petportrait.pets import service as pets_service
from petportrait.portraits import service
from petportrait.portraits.models import (
    JobKind,
    ModelState,
    PetModel,
    Render,
    RenderState,
    without_fingerprints,
)
from petportrait.registry import emit
from petportrait.retention import blobkeys, policy
from petportrait.retention.keys import destroy_keys
from petportrait.settings import Settings
from petportrait.storage.base import BlobStore

log = logging.getLogger(__name__)


def remove_attempt_outputs(session: Session, *, blobs: BlobStore, job: Job, attempt: int) -> list[str]:
    """Delete the blobs an attempt wrote that no committed row refers to; returns the keys removed."""
    kind = "model" if job.kind == JobKind.TRAIN.value else "render"
    prefix = blobkeys.attempt_prefix(kind, owner_id=job.owner_id, job_id=job.id, attempt=attempt)
    keep: set[str] = set()
    if job.kind == JobKind.TRAIN.value:
        key = session.scalar(select(PetModel.storage_key).where(PetModel.id == job.target_id))
        if key:
            keep.add(key)
    else:
        ids = [str(i) for i in (job.payload or {}).get("render_ids", [])]
        if ids:
            keep.update(k for k in session.scalars(select(Render.storage_key).where(Render.id.in_(ids))) if k)
    removed = []
    for info in list(blobs.list(prefix)):
        if info.key not in keep:
            blobs.delete(info.key)
            removed.append(info.key)
    destroy_keys(session, removed)  # in the caller's transaction
    return removed


class PortraitEngine:
    """Keeps base pipelines loaded between jobs (one per base model) on one device."""

    def __init__(self, settings: Settings) -> None:
        from petportrait.ml.models import pick_device

        self.settings = settings
        self.device = pick_device(settings.ml.device)
        self._renderers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def resolve(self, base_model: str) -> Any:
        from petportrait.ml.models import resolve_base_model

        return resolve_base_model(base_model, device=self.device, models_dir=self.settings.models_dir)

    def renderer(self, base_model: str) -> Any:
        from petportrait.ml.render import Renderer

        with self._lock:
            if base_model not in self._renderers:
                resolved = self.resolve(base_model)
                log.info("base model %s (%s)", resolved.source, resolved.reason or "configured")
                self._renderers[base_model] = Renderer(resolved.source, device=self.device)
            return self._renderers[base_model]


def _fence_write(ctx: WorkerContext, session: Session, job: Job) -> None:
    """Before a model or render row is written, in the same transaction: this attempt still owns the job,
    its cancel flag is not set, and its owner is not erased; else nothing is written (CancelRequested)."""
    from petportrait.accounts import service as accounts_service

    jobs_service.assert_may_write(session, job=job, worker_id=ctx.worker_id)
    if accounts_service.is_erased(session, job.owner_id):
        raise jobs_service.CancelRequested(job.id)


_PURPOSE_LIMIT = "purpose_limit"  # a training job pointed at another account's model or pet


def _train(ctx: WorkerContext, engine: PortraitEngine, session: Session, job: Job, beat: Beat) -> None:
    from petportrait.ml.models import ModelLoadError
    from petportrait.ml.photos import PhotoData
    from petportrait.ml.train import (
        InvalidTrainSpec,
        TrainingCancelled,
        TrainProgress,
        TrainSpec,
        memory_savers,
        train_lora,
    )

    model = session.get(PetModel, job.target_id)
    if model is None:
        raise JobFailed("model_deleted", "The model was deleted before it could be trained.")
    if model.owner_id != job.owner_id:
        raise JobFailed(_PURPOSE_LIMIT, "This job may train only its own account's models.")
    model.state = ModelState.TRAINING.value
    session.commit()
    beat.update(step=0, total=1, message="Preparing photos")
    try:
        photos = pets_service.read_photos_for_training(
            session,
            blobs=ctx.blobs,
            job_id=job.id,
            job_owner_id=job.owner_id,
            pet_id=model.pet_id,
            photo_ids=list(model.photo_ids),
        )
    except PermissionError as exc:
        raise JobFailed(
            _PURPOSE_LIMIT, "This job may read only the photos of its own account's pet."
        ) from exc
    if len(photos) < service.MIN_TRAINING_PHOTOS:
        raise JobFailed(
            "not_enough_photos",
            f"Only {len(photos)} of the pet's photos are still kept; training needs at least "
            f"{service.MIN_TRAINING_PHOTOS}. Upload more photos and train again.",
        )
    try:
        resolved = engine.resolve(model.base_model)
    except ModelLoadError as exc:
        raise JobFailed("model_unavailable", str(exc)) from exc

    def progress(p: TrainProgress) -> None:
        beat.update(
            step=p.step, total=p.total, eta_seconds=p.eta_seconds, message=f"Training (loss {p.loss:.4f})"
        )

    masking = pets_service.masking_of_photos(
        session, pet_id=model.pet_id, photo_ids=[photo_id for photo_id, _ in photos]
    )
    savers = memory_savers(resolved.family, engine.device)  # SDXL on CUDA: the diffusers recipe's savers
    spec = TrainSpec(
        base_model=resolved.source,
        photos=[PhotoData(photo_id, data) for photo_id, data in photos],
        mask_background_weight=ctx.settings.ml.mask_background_weight,
        masked=[masking.get(photo_id, True) for photo_id, _ in photos],
        segmenter=ctx.settings.ml.segmenter,
        species=model.species,
        token=model.token,
        steps=ctx.settings.ml.train_steps,
        resolution=ctx.settings.ml.resolution,
        seed=int(hashlib.sha256(model.id.encode()).hexdigest()[:8], 16),
        device=engine.device,
        gradient_checkpointing=savers.gradient_checkpointing,
        use_8bit_adam=savers.use_8bit_adam,
    )
    del photos
    try:
        trained = train_lora(spec, progress=progress, should_stop=beat.should_stop)
    except TrainingCancelled as exc:
        raise JobStopped(beat.stop_reason or "cancelled") from exc
    except InvalidTrainSpec as exc:
        raise JobFailed("invalid_training_data", str(exc)) from exc
    except ModelLoadError as exc:
        raise JobFailed("model_unavailable", str(exc)) from exc
    beat.check()
    _fence_write(ctx, session, job)
    session.commit()
    key = blobkeys.model_key(owner_id=job.owner_id, job_id=job.id, attempt=job.attempt, model_id=model.id)
    data = trained.data
    ctx.blobs.put_bytes(key, data)
    now = utcnow()
    _fence_write(ctx, session, job)
    model = session.get(PetModel, job.target_id, populate_existing=True)
    if model is None:
        raise JobFailed("model_deleted", "The model was deleted while it was being trained.")
    model.state = ModelState.READY.value
    model.storage_key = key
    model.size = len(data)
    model.sha256 = hashlib.sha256(data).hexdigest()
    model.final_loss = float(trained.final_loss)
    model.trained_at = now
    model.expires_at = service.expiry_for_model(ctx.settings, now)
    emit(session, "model.ready", owner_id=job.owner_id, model_id=model.id, pet_id=model.pet_id)
    released = jobs_service.finish(session, job=job, worker_id=ctx.worker_id, state=JobState.SUCCEEDED)
    session.commit()
    ctx.released.extend(released)


def _png_bytes(image: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _render(ctx: WorkerContext, engine: PortraitEngine, session: Session, job: Job, beat: Beat) -> None:
    from petportrait.ml.models import ModelLoadError
    from petportrait.ml.render import RenderRequest

    render_ids = [str(i) for i in (job.payload or {}).get("render_ids", [])]
    model = session.get(PetModel, job.target_id)
    if model is None or model.storage_key is None:
        raise JobFailed("model_unavailable", "The model was deleted before the portraits could be rendered.")
    if model.state != ModelState.READY.value:
        raise JobFailed("model_unavailable", f"The model is not ready (it is {model.state}).")
    if service.model_expired(model, settings=ctx.settings):
        raise JobFailed(
            "model_expired",
            f"The model passed its retention period ({policy.days('model', ctx.settings)}) "
            "before the portraits were rendered.",
        )
    try:
        renderer = engine.renderer(model.base_model)
    except ModelLoadError as exc:
        raise JobFailed("model_unavailable", str(exc)) from exc
    # read once for the job, in memory; it ends with the job (the renderer keeps no LoRA)
    lora = renderer.load_lora(ctx.blobs.get_bytes(model.storage_key), name=f"of model {model.id}")
    total = len(render_ids)
    done = 0
    beat.update(step=0, total=total, message="Rendering")
    started = time.monotonic()
    for render_id in render_ids:
        beat.check()
        render = session.get(Render, render_id, populate_existing=True)
        if render is None or render.state in (RenderState.READY.value, RenderState.CANCELLED.value):
            done += 1
            continue
        render.state = RenderState.RENDERING.value
        session.commit()
        options = render.params or {}
        extra: dict[str, Any] = {}
        if options.get("steps") is not None:
            extra["steps"] = int(options["steps"])
        if options.get("guidance") is not None:
            extra["guidance"] = float(options["guidance"])
        prompt = render.prompt.replace("{pet}", "{subject}") if render.prompt else None
        result = renderer.render(
            RenderRequest(
                lora=lora,
                token=model.token,
                species=model.species,
                style=render.style,
                prompt=prompt,
                negative_prompt=options.get("negative_prompt"),
                seed=render.seed,
                count=1,
                width=render.width,
                height=render.height,
                **extra,
            )
        )
        params = dict(result.params)
        params.update({"model_id": model.id, "render_id": render.id, "preview": bool(result.is_preview)})
        data = _png_bytes(result.images[0])
        _fence_write(ctx, session, job)
        session.commit()
        key = blobkeys.render_key(
            owner_id=job.owner_id, job_id=job.id, attempt=job.attempt, render_id=render.id
        )
        ctx.blobs.put_bytes(key, data)
        now = utcnow()
        _fence_write(ctx, session, job)
        render = session.get(Render, render_id, populate_existing=True)
        if render is None:  # deleted by its owner while rendering
            ctx.blobs.delete(key)
            session.commit()
            done += 1
            continue
        render.state = RenderState.READY.value
        render.storage_key = key
        render.content_type = "image/png"
        render.size = len(data)
        render.sha256 = hashlib.sha256(data).hexdigest()
        render.params = _jsonable(without_fingerprints(params, keys=frozenset({"photo_sha256"})))
        render.is_preview = bool(result.is_preview)
        render.rendered_at = now
        render.expires_at = service.expiry_for_render(ctx.settings, now)
        emit(session, "render.ready", owner_id=render.owner_id, render_id=render.id, model_id=model.id)
        session.commit()
        done += 1
        elapsed = time.monotonic() - started
        beat.update(step=done, total=total, eta_seconds=elapsed / done * (total - done))
    jobs_service.assert_owned(session, job=job, worker_id=ctx.worker_id)
    released = jobs_service.finish(session, job=job, worker_id=ctx.worker_id, state=JobState.SUCCEEDED)
    session.commit()
    ctx.released.extend(released)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


class PortraitJobs:
    """The handler of training and render jobs; keeps base pipelines loaded between jobs."""

    def __init__(self, engine: PortraitEngine | None = None) -> None:
        self._engine = engine
        self._lock = threading.Lock()

    def engine(self, settings: Settings) -> PortraitEngine:
        """The engine of this process, made on first use (it loads pipelines only when a job needs them)."""
        with self._lock:
            if self._engine is None:
                self._engine = PortraitEngine(settings)
            return self._engine

    def run(self, ctx: WorkerContext, session: Session, job: Job, beat: Beat) -> None:
        engine = self.engine(ctx.settings)
        if job.kind == JobKind.TRAIN.value:
            _train(ctx, engine, session, job, beat)
        else:
            _render(ctx, engine, session, job, beat)

    def remove_outputs(self, session: Session, *, blobs: BlobStore, job: Job, attempt: int) -> list[str]:
        return remove_attempt_outputs(session, blobs=blobs, job=job, attempt=attempt)

    def on_end(self, session: Session, *, job: Job) -> None:
        service.reflect_job_end(session, job=job)
