"""The worker side of portraits: run a training or a render job claimed by a consumer.

Outputs are written under keys derived from the job and its attempt
(`models/{owner}/{job}/a{attempt}/{model}.safetensors`, `renders/{owner}/{job}/a{attempt}/{render}.png`),
so a retry never doubles them, and a dead attempt's partial outputs can be found and removed.
"""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from petportrait.clock import utcnow
from petportrait.jobs import service as jobs_service
from petportrait.jobs.models import Job, JobKind, JobState
from petportrait.pets import service as pets_service
from petportrait.portraits import service
from petportrait.portraits.models import ModelState, PetModel, Render, RenderState
from petportrait.registry import emit
from petportrait.rights import service as rights_service
from petportrait.settings import Settings
from petportrait.storage.base import BlobStore

log = logging.getLogger(__name__)


class JobStopped(Exception):
    """The job must stop: cancelled by its owner, handed back at shutdown, or lost to the reaper."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JobFailed(Exception):
    """The job cannot succeed; `code` and the message are shown to the person."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def model_key(*, owner_id: str, job_id: str, attempt: int, model_id: str) -> str:
    return f"models/{owner_id}/{job_id}/a{attempt}/{model_id}.safetensors"


def render_key(*, owner_id: str, job_id: str, attempt: int, render_id: str) -> str:
    return f"renders/{owner_id}/{job_id}/a{attempt}/{render_id}.png"


def remove_attempt_outputs(session: Session, *, blobs: BlobStore, job: Job, attempt: int) -> list[str]:
    """Delete the blobs an attempt wrote that no committed row refers to; returns the keys removed."""
    prefix_kind = "models" if job.kind == JobKind.TRAIN.value else "renders"
    prefix = f"{prefix_kind}/{job.owner_id}/{job.id}/a{attempt}/"
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
                self._renderers[base_model] = Renderer(resolved.source, device=self.device)
            return self._renderers[base_model]


@dataclass
class Beat:
    """Shared between a running job and its heartbeat thread: latest progress and stop reasons."""

    step: int | None = None
    total: int | None = None
    eta_seconds: float | None = None
    message: str | None = None
    stop_reason: str | None = None
    changed: threading.Event = field(default_factory=threading.Event)

    def update(
        self, *, step: int, total: int, eta_seconds: float | None = None, message: str | None = None
    ) -> None:
        self.step, self.total, self.eta_seconds = step, total, eta_seconds
        if message is not None:
            self.message = message
        self.changed.set()

    def should_stop(self) -> bool:
        return self.stop_reason is not None

    def check(self) -> None:
        if self.stop_reason is not None:
            raise JobStopped(self.stop_reason)


class Heartbeat:
    """A thread that writes the job's heartbeat and progress, and notices cancellation or loss."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        job: Job,
        worker_id: str,
        interval: float,
        beat: Beat,
        shutdown: threading.Event,
        hand_back: threading.Event,
    ) -> None:
        self.factory, self.job, self.worker_id, self.interval = factory, job, worker_id, interval
        self.beat, self.shutdown, self.hand_back = beat, shutdown, hand_back
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job.id[:8]}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self.beat.changed.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        last = 0.0
        while not self._done.is_set():
            self.beat.changed.wait(timeout=min(self.interval, 0.5))
            self.beat.changed.clear()
            if self.hand_back.is_set() and self.beat.stop_reason is None:
                self.beat.stop_reason = "hand_back"
            now = time.monotonic()
            if now - last < min(self.interval, 0.5) and not self._done.is_set():
                continue
            last = now
            try:
                with self.factory() as session:
                    cancel = jobs_service.heartbeat(
                        session,
                        job=self.job,
                        worker_id=self.worker_id,
                        step=self.beat.step,
                        total=self.beat.total,
                        eta_seconds=self.beat.eta_seconds,
                        message=self.beat.message,
                    )
                if cancel and self.beat.stop_reason is None:
                    self.beat.stop_reason = "cancelled"
            except jobs_service.LostJob:
                self.beat.stop_reason = "lost"
                return
            except Exception:
                log.exception("heartbeat of job %s failed; retrying", self.job.id)


@dataclass
class WorkerContext:
    """What a consumer gives each job: settings, database, blobs, the model engine and stop signals."""

    settings: Settings
    session_factory: sessionmaker[Session]
    blobs: BlobStore
    worker_id: str
    engine: PortraitEngine
    scratch_root: Path
    shutdown: threading.Event = field(default_factory=threading.Event)
    hand_back: threading.Event = field(default_factory=threading.Event)
    released: list[str] = field(default_factory=list)


def run_job(ctx: WorkerContext, job_id: str) -> str | None:
    """Claim and run one job; returns its end state (None if not claimable). Job errors never raise."""
    with ctx.session_factory() as session:
        job = jobs_service.claim(session, job_id=job_id, worker_id=ctx.worker_id)
        if job is None:
            return None
        beat = Beat(total=0, step=0)
        scratch = ctx.scratch_root / f"{job.id}-a{job.attempt}"
        heartbeat = Heartbeat(
            ctx.session_factory,
            job=job,
            worker_id=ctx.worker_id,
            interval=ctx.settings.queue.heartbeat_seconds,
            beat=beat,
            shutdown=ctx.shutdown,
            hand_back=ctx.hand_back,
        )
        try:
            with heartbeat:
                if job.kind == JobKind.TRAIN.value:
                    _train(ctx, session, job, beat, scratch)
                else:
                    _render(ctx, session, job, beat, scratch)
            return JobState.SUCCEEDED.value
        except JobStopped as stop:
            return _stopped(ctx, session, job, stop.reason)
        except JobFailed as failure:
            return _end(ctx, session, job, JobState.FAILED, failure.code, failure.message)
        except jobs_service.LostJob:
            return _stopped(ctx, session, job, "lost")
        except Exception:
            log.exception("job %s failed unexpectedly", job.id)
            return _end(
                ctx,
                session,
                job,
                JobState.FAILED,
                "job_error",
                "Something went wrong on our side while running this job; nothing was kept half-way. "
                "Try again.",
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _end(
    ctx: WorkerContext, session: Session, job: Job, state: JobState, code: str | None, message: str | None
) -> str | None:
    session.rollback()
    try:
        remove_attempt_outputs(session, blobs=ctx.blobs, job=job, attempt=job.attempt)
        released = jobs_service.finish(
            session, job=job, worker_id=ctx.worker_id, state=state, error_code=code, error_message=message
        )
        service.reflect_job_end(session, job=job)
        session.commit()
        ctx.released.extend(released)
        return state.value
    except jobs_service.LostJob:
        session.rollback()
        return None


def _stopped(ctx: WorkerContext, session: Session, job: Job, reason: str) -> str | None:
    session.rollback()
    if reason == "cancelled":
        return _end(ctx, session, job, JobState.CANCELLED, None, None)
    if reason == "hand_back":
        remove_attempt_outputs(session, blobs=ctx.blobs, job=job, attempt=job.attempt)
        try:
            jobs_service.assert_owned(session, job=job, worker_id=ctx.worker_id)
            job_row = session.get(Job, job.id, populate_existing=True)
            assert job_row is not None
            job_row.state = JobState.QUEUED.value
            job_row.worker_id = None
            job_row.heartbeat_at = None
            job_row.message = "Handed back by a worker that was shutting down; another worker continues."
            session.commit()
            ctx.released.append(job.id)
            return JobState.QUEUED.value
        except jobs_service.LostJob:
            session.rollback()
            return None
    # lost: the reaper gave this attempt's job to another; leave nothing of ours behind
    remove_attempt_outputs(session, blobs=ctx.blobs, job=job, attempt=job.attempt)
    session.commit()
    return None


def _train(ctx: WorkerContext, session: Session, job: Job, beat: Beat, scratch: Path) -> None:
    from petportrait.ml.models import ModelLoadError
    from petportrait.ml.train import InvalidTrainSpec, TrainingCancelled, TrainProgress, TrainSpec, train_lora

    model = session.get(PetModel, job.target_id)
    if model is None:
        raise JobFailed("model_deleted", "The model was deleted before it could be trained.")
    model.state = ModelState.TRAINING.value
    session.commit()
    beat.update(step=0, total=1, message="Preparing photos")
    photos = pets_service.read_photos_for_training(
        session,
        blobs=ctx.blobs,
        job_id=job.id,
        job_owner_id=job.owner_id,
        pet_id=model.pet_id,
        photo_ids=list(model.photo_ids),
        dest=scratch / "photos",
    )
    if len(photos) < service.MIN_TRAINING_PHOTOS:
        raise JobFailed(
            "not_enough_photos",
            f"Only {len(photos)} of the pet's photos are still kept; training needs at least "
            f"{service.MIN_TRAINING_PHOTOS}. Upload more photos and train again.",
        )
    try:
        resolved = ctx.engine.resolve(model.base_model)
    except ModelLoadError as exc:
        raise JobFailed("model_unavailable", str(exc)) from exc

    def progress(p: TrainProgress) -> None:
        beat.update(
            step=p.step, total=p.total, eta_seconds=p.eta_seconds, message=f"Training (loss {p.loss:.4f})"
        )

    spec = TrainSpec(
        base_model=resolved.source,
        photos=photos,
        species=model.species,
        output_path=scratch / "lora.safetensors",
        token=model.token,
        steps=ctx.settings.ml.train_steps,
        resolution=ctx.settings.ml.resolution,
        seed=int(hashlib.sha256(model.id.encode()).hexdigest()[:8], 16),
        device=ctx.engine.device,
        work_dir=scratch,
    )
    try:
        trained = train_lora(spec, progress=progress, should_stop=beat.should_stop)
    except TrainingCancelled as exc:
        raise JobStopped(beat.stop_reason or "cancelled") from exc
    except InvalidTrainSpec as exc:
        raise JobFailed("invalid_training_data", str(exc)) from exc
    except ModelLoadError as exc:
        raise JobFailed("model_unavailable", str(exc)) from exc
    beat.check()
    key = model_key(owner_id=job.owner_id, job_id=job.id, attempt=job.attempt, model_id=model.id)
    data = trained.path.read_bytes()
    ctx.blobs.put_bytes(key, data)
    now = utcnow()
    jobs_service.assert_owned(session, job=job, worker_id=ctx.worker_id)
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


def _render(ctx: WorkerContext, session: Session, job: Job, beat: Beat, scratch: Path) -> None:
    from petportrait.ml.models import ModelLoadError
    from petportrait.ml.render import RenderRequest

    render_ids = [str(i) for i in (job.payload or {}).get("render_ids", [])]
    model = session.get(PetModel, job.target_id)
    if model is None or model.storage_key is None:
        raise JobFailed("model_unavailable", "The model was deleted before the portraits could be rendered.")
    if model.state != ModelState.READY.value:
        raise JobFailed("model_unavailable", f"The model is not ready (it is {model.state}).")
    if service.model_expired(model):
        raise JobFailed(
            "model_expired", "The model passed its 7-day period before the portraits were rendered."
        )
    scratch.mkdir(parents=True, exist_ok=True)
    lora_path = scratch / f"{model.id}.safetensors"
    with ctx.blobs.open(model.storage_key) as stream, lora_path.open("wb") as out:
        shutil.copyfileobj(stream, out)
    try:
        renderer = ctx.engine.renderer(model.base_model)
    except ModelLoadError as exc:
        raise JobFailed("model_unavailable", str(exc)) from exc
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
                lora_path=lora_path,
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
        key = render_key(owner_id=job.owner_id, job_id=job.id, attempt=job.attempt, render_id=render.id)
        ctx.blobs.put_bytes(key, data)
        now = utcnow()
        jobs_service.assert_owned(session, job=job, worker_id=ctx.worker_id)
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
        render.params = _jsonable(params)
        render.is_preview = bool(result.is_preview)
        render.rendered_at = now
        render.expires_at = service.expiry_for_render(ctx.settings, now)
        rights_service.record_generation(session, render=render, model=model, settings=ctx.settings)
        emit(session, "render.ready", owner_id=job.owner_id, render_id=render.id, model_id=model.id)
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
