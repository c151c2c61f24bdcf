"""My pets: create a pet, upload photos (per-file results, deletion dates), delete photos, train a model."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select
from sqlalchemy.orm import Session

from petportrait.errors import InvalidInput, TooManyRequests
from petportrait.jobs import service as jobs_service
from petportrait.jobs.models import FINAL_STATES, Job
from petportrait.notifications import service as notifications_service
from petportrait.pets import service as pets_service
from petportrait.pets.models import Pet, Photo, Species
from petportrait.pets.views import read_incoming
from petportrait.portraits import service as portraits_service
from petportrait.portraits.models import JobKind, ModelState, PetModel
from petportrait.ratelimit import limiter_of
from petportrait.registry import settings_of
from petportrait.web.pages import examples
from petportrait.web.pages.common import FormPage, Page, PageDep, PageRoute, preview_in_use

router = APIRouter(route_class=PageRoute, include_in_schema=False)

NO_FILES = "Choose one or more photos to upload first: drop them on the area above or press Choose photos."
SPECIES_LABELS = {
    Species.DOG.value: "Dog",
    Species.CAT.value: "Cat",
    Species.RABBIT.value: "Rabbit",
    Species.BIRD.value: "Bird",
    Species.OTHER.value: "Other",
}


def rejection_sentence(code: str | None, detail: str | None, *, min_side: int, max_bytes: int) -> str:
    """Why a file was not stored, as a sentence for the person who uploaded it."""
    found = re.search(r"(\d+)x(\d+)", detail or "")
    size = f" (this one is {found.group(1)} by {found.group(2)})" if found else ""
    sentences = {
        "not_an_image": "This file is not a photo (JPEG, PNG or WebP).",
        "unsupported_format": f"This file is not a photo we accept (JPEG, PNG or WebP). {detail or ''}",
        "image_too_small": (
            f"This photo is too small: the short side must be at least {min_side} pixels{size}."
        ),
        "duplicate_photo": "You already uploaded this photo, or one nearly the same.",
        "file_too_large": f"This file is too large: a photo may be at most {max_bytes // (1024 * 1024)} MB.",
        "empty_file": "This file is empty.",
        "corrupt_image": "This photo is damaged or cut short, so it cannot be read.",
        "decompression_bomb": "This image is too large to process safely.",
    }
    return sentences.get(code or "", detail or "This file could not be stored.").strip()


@dataclass
class Training:
    """What the pet page shows about the pet's model: none yet, training, ready, expired, failed."""

    model: PetModel | None
    job: Job | None
    status: str  # none | running | ready | expired | failed | cancelled

    @property
    def running(self) -> bool:
        return self.status == "running"


def latest_model(session: Session, *, pet_id: str) -> PetModel | None:
    """The pet's newest model, expired or not."""
    return session.scalars(
        select(PetModel).where(PetModel.pet_id == pet_id).order_by(PetModel.created_at.desc()).limit(1)
    ).first()


def training_of(session: Session, *, pet: Pet) -> Training:
    model = latest_model(session, pet_id=pet.id)
    if model is None:
        return Training(model=None, job=None, status="none")
    job = portraits_service.current_job(session, kind=JobKind.TRAIN, target_id=model.id)
    if model.state in (ModelState.QUEUED.value, ModelState.TRAINING.value):
        if job is not None and job.state in FINAL_STATES:
            return Training(model=model, job=job, status="failed" if job.state == "failed" else "cancelled")
        return Training(model=model, job=job, status="running")
    if model.state == ModelState.READY.value:
        expired = portraits_service.model_expired(model, settings=settings_of(session))
        return Training(model=model, job=job, status="expired" if expired else "ready")
    return Training(model=model, job=job, status=model.state)


def _pet_context(page: Page, pet: Pet) -> dict[str, Any]:
    photos = sorted(
        pets_service.list_photos(page.session, owner_id=pet.owner_id, pet_id=pet.id),
        key=lambda p: (p.uploaded_at, p.original_filename),
    )
    return {
        "pet": pet,
        "photos": photos,
        "training": training_of(page.session, pet=pet),
        "min_photos": portraits_service.MIN_TRAINING_PHOTOS,
        "max_photos": page.settings.security.max_photos_per_pet,
        "min_side": page.settings.security.min_photo_side,
        "species_labels": SPECIES_LABELS,
        "email_when_done": notifications_service.preferences(page.session, user_id=pet.owner_id).job_messages,
    }


def _pet_rows(page: Page) -> list[dict[str, Any]]:
    """The person's pets, each with its count of live photos and its training state."""
    return [
        {
            "pet": pet,
            "photo_count": pets_service.count_live_photos(page.session, pet_id=pet.id),
            "training": training_of(page.session, pet=pet),
        }
        for pet in pets_service.list_pets(page.session, owner_id=page.user.id)
    ]


@router.get("/pets")
def my_pets(page: PageDep) -> Response:
    """The person's pets, and a form to add one."""
    return page.render(
        "pets.html", title="My pets", rows=_pet_rows(page), species_labels=SPECIES_LABELS, errors={}, name=""
    )


@router.post("/pets")
def create_pet(
    page: FormPage,
    name: Annotated[str, Form(max_length=500)] = "",
    species: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    """Add a pet, then go to its page to upload photos."""
    user = page.user
    name = name.strip()
    errors: dict[str, str] = {}
    if not name:
        errors["name"] = "Give your pet a name."
    elif len(name) > 100:
        errors["name"] = "A name can have at most 100 characters."
    if species not in SPECIES_LABELS:
        errors["species"] = "Choose what kind of animal your pet is."
    status = 422
    pet = None
    if not errors:
        try:
            pet = pets_service.create_pet(
                page.session, owner_id=user.id, name=name, species=Species(species), settings=page.settings
            )
        except TooManyRequests as exc:
            errors["name"] = exc.detail
            status = exc.status
    if errors or pet is None:
        return page.render(
            "pets.html",
            status=status,
            title="My pets",
            rows=_pet_rows(page),
            species_labels=SPECIES_LABELS,
            errors=errors,
            name=name,
        )
    return page.redirect(f"/pets/{pet.id}")


@router.get("/pets/{pet_id}")
def pet_page(pet_id: str, page: PageDep) -> Response:
    """A pet: its photos with their deletion dates, the upload area, and training."""
    pet = pets_service.get_pet(page.session, owner_id=page.user.id, pet_id=pet_id)
    if preview_in_use(page.settings):
        examples.ensure_started(page.settings)  # ready by the time the person looks at the styles
    return page.render("pet.html", title=pet.name, results=None, **_pet_context(page, pet))


@router.get("/pets/{pet_id}/training")
def training_fragment(pet_id: str, page: PageDep) -> Response:
    """The training panel (htmx asks for it when a training ends), with the photos and upload controls that
    training kept disabled, swapped in beside it."""
    pet = pets_service.get_pet(page.session, owner_id=page.user.id, pet_id=pet_id)
    return page.render("_training.html", oob=True, **_pet_context(page, pet))


@router.post("/pets/{pet_id}/photos")
async def upload_photos(
    pet_id: str,
    page: FormPage,
    files: Annotated[list[UploadFile] | None, File()] = None,
) -> Response:
    """Upload photos; each file is stored or rejected with a sentence saying why."""
    user = page.user
    await run_in_threadpool(
        limiter_of(page.request).take,
        ("uploads_per_account", user.id),
        detail="Too many uploads from this account.",
    )
    pet = await run_in_threadpool(pets_service.get_pet, page.session, owner_id=user.id, pet_id=pet_id)
    chosen = [f for f in files or [] if f.filename]
    if not chosen:
        if page.is_htmx:
            return page.render("_upload_results.html", results=[], message=NO_FILES, oob=False)
        raise InvalidInput(NO_FILES, code="no_files", status=400)
    sec = page.settings.security
    incoming = await read_incoming(chosen, max_bytes=sec.max_upload_bytes)
    limits = pets_service.UploadLimits.from_settings(page.settings)
    outcomes = await run_in_threadpool(
        pets_service.upload_photos,
        page.session,
        blobs=page.services.blobs,
        pet=pet,
        files=incoming,
        limits=limits,
    )
    results = [
        {
            "filename": o.filename or "(no name)",
            "stored": o.photo is not None,
            "photo": o.photo,
            "detail": None
            if o.photo is not None
            else rejection_sentence(
                o.code, o.detail, min_side=sec.min_photo_side, max_bytes=sec.max_upload_bytes
            ),
        }
        for o in outcomes
    ]
    context = await run_in_threadpool(_pet_context, page, pet)
    if page.is_htmx:
        return page.render("_upload_results.html", results=results, oob=True, **context)
    return page.render("pet.html", title=pet.name, results=results, **context)


@router.post("/photos/{photo_id}/delete")
def delete_photo(photo_id: str, page: FormPage) -> Response:
    """Delete a photo now (a deletion receipt is kept on My data)."""
    user = page.user
    photo = page.session.get(Photo, photo_id)
    pet_id = photo.pet_id if photo is not None and photo.owner_id == user.id else None
    pets_service.delete_photo(page.session, blobs=page.services.blobs, owner_id=user.id, photo_id=photo_id)
    if page.is_htmx:
        return page.finish(Response(status_code=200, content=""))
    return page.redirect(f"/pets/{pet_id}" if pet_id else "/pets")


@router.post("/photos/{photo_id}/masking")
def photo_masking(photo_id: str, page: FormPage, masking: Annotated[str, Form()] = "on") -> Response:
    """Turn training with a photo's subject mask on or off."""
    photo = pets_service.set_photo_masking(
        page.session, owner_id=page.user.id, photo_id=photo_id, masking=masking == "on"
    )
    pet_id = photo.pet_id
    page.session.commit()
    return page.redirect(f"/pets/{pet_id}#photo-{photo_id}")


@router.post("/pets/{pet_id}/train")
def train(pet_id: str, page: FormPage) -> Response:
    """Start training the pet's model from its photos; the pet page shows its progress."""
    _model, job = portraits_service.request_training(
        page.session, owner_id=page.user.id, pet_id=pet_id, settings=page.settings
    )
    page.session.commit()
    jobs_service.send(page.services.session_factory, page.services.queue, [job.id])
    return page.redirect(f"/pets/{pet_id}#training")


@router.post("/jobs/{job_id}/cancel")
def cancel(job_id: str, page: FormPage) -> Response:
    """Cancel a training or render job."""
    job = jobs_service.get_job_for_owner(page.session, owner_id=page.user.id, job_id=job_id)
    jobs_service.request_cancel(page.session, job=job)
    portraits_service.reflect_job_end(page.session, job=job)
    model = page.session.get(PetModel, job.target_id)
    if page.is_htmx:
        return page.finish(Response(status_code=204))
    return page.redirect(f"/pets/{model.pet_id}#training" if model is not None else "/pets")
