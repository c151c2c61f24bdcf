"""Pets and photos: create, list, upload (sanitised, de-duplicated), read and delete."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from petportrait.clock import utcnow
from petportrait.db import new_id
from petportrait.errors import NotFound, ProblemError, TooManyRequests
from petportrait.jobs import service as jobs_service
from petportrait.jobs.models import FINAL_STATES, Job
from petportrait.paging import PageParams, page_query
from petportrait.pets.imaging import (
    DecodeBudget,
    PhotoRejected,
    is_near_duplicate,
    sanitize_photo,
    validate_filename,
)
from petportrait.pets.models import Pet, Photo, Species
from petportrait.registry import emit, registry_of, settings_of
from petportrait.retention import blobkeys, holds, policy, tombstones
from petportrait.settings import Settings
from petportrait.storage.base import BlobStore
from petportrait.text import clean_line

log = logging.getLogger(__name__)


@dataclass
class IncomingFile:
    """One file of an upload request, read up to the size limit (plus one byte to detect overflow)."""

    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class FileOutcome:
    """What happened to one uploaded file."""

    filename: str
    photo: Photo | None = None
    code: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int
    min_side: int
    max_pixels: int
    max_photos: int
    request_pixels: int = 200_000_000

    @classmethod
    def from_settings(cls, settings: Settings) -> UploadLimits:
        """The limits the settings set (size, pixels, photos per pet)."""
        sec = settings.security
        return cls(
            max_bytes=sec.max_upload_bytes,
            min_side=sec.min_photo_side,
            max_pixels=sec.max_photo_pixels,
            max_photos=sec.max_photos_per_pet,
            request_pixels=settings.quotas.upload_pixels_per_request,
        )


def create_pet(session: Session, *, owner_id: str, name: str, species: Species, settings: Settings) -> Pet:
    """Create a pet for its owner, within the account's quota of pets (429 beyond)."""
    name = clean_line(name, field="name")
    limit = settings.quotas.pets_per_account
    owned = session.scalar(select(func.count()).select_from(Pet).where(Pet.owner_id == owner_id)) or 0
    if owned >= limit:
        raise TooManyRequests(
            f"An account may have {limit} pets and this one has {owned}. Delete a pet you no longer use to "
            "add another.",
            code="pet_quota_exceeded",
            headers={"Retry-After": str(settings.quotas.retry_after_seconds)},
            limit=limit,
        )
    pet = Pet(owner_id=owner_id, name=name, species=species.value, created_at=utcnow())
    session.add(pet)
    session.flush()
    return pet


def list_pets(session: Session, *, owner_id: str) -> list[Pet]:
    """The owner's pets, oldest first."""
    return list(session.scalars(select(Pet).where(Pet.owner_id == owner_id).order_by(Pet.created_at, Pet.id)))


def page_pets(session: Session, *, owner_id: str, page: PageParams) -> tuple[list[Pet], str | None]:
    """One page of the owner's pets, oldest first."""
    query = select(Pet).where(Pet.owner_id == owner_id)
    return page_query(session, query, stamp=Pet.created_at, ident=Pet.id, page=page, descending=False)


def page_photos(
    session: Session, *, owner_id: str, pet_id: str, page: PageParams
) -> tuple[list[Photo], str | None]:
    """One page of a pet's unexpired photos, oldest first."""
    get_pet(session, owner_id=owner_id, pet_id=pet_id)
    query = live_photos_query(settings=settings_of(session)).where(Photo.pet_id == pet_id)
    return page_query(session, query, stamp=Photo.uploaded_at, ident=Photo.id, page=page, descending=False)


def get_pet(session: Session, *, owner_id: str, pet_id: str) -> Pet:
    """The owner's pet; another person's pet is reported as not found."""
    pet = session.get(Pet, pet_id)
    if pet is None or pet.owner_id != owner_id:
        raise NotFound("No such pet.", code="pet_not_found")
    return pet


def live_photos_query(*, settings: Settings, now: datetime | None = None) -> Select[Photo]:
    """A select of photos not yet expired (read-time hiding: expired photos are gone at once)."""
    return select(Photo).where(policy.live_clause(Photo, now=now, settings=settings))


def count_live_photos(session: Session, *, pet_id: str) -> int:
    """How many unexpired photos a pet has."""
    now = utcnow()
    return (
        session.scalar(
            select(func.count()).select_from(
                live_photos_query(now=now, settings=settings_of(session))
                .where(Photo.pet_id == pet_id)
                .subquery()
            )
        )
        or 0
    )


def list_photos(session: Session, *, owner_id: str, pet_id: str) -> list[Photo]:
    """A pet's unexpired photos, oldest first."""
    get_pet(session, owner_id=owner_id, pet_id=pet_id)
    query = (
        live_photos_query(settings=settings_of(session))
        .where(Photo.pet_id == pet_id)
        .order_by(Photo.uploaded_at, Photo.id)
    )
    return list(session.scalars(query))


def get_photo(session: Session, *, owner_id: str, photo_id: str) -> Photo:
    """The owner's photo; 404 for another person's, 410 once expired."""
    photo = session.get(Photo, photo_id)
    if photo is None or photo.owner_id != owner_id:
        raise NotFound("No such photo.", code="photo_not_found")
    policy.ensure_live(
        photo, settings=settings_of(session)
    )  # 410 photo_expired from the moment it expires, before any sweep
    return photo


def upload_photos(
    session: Session, *, blobs: BlobStore, pet: Pet, files: list[IncomingFile], limits: UploadLimits
) -> list[FileOutcome]:
    """Sanitise and store each file; each is stored or rejected with a reason, never half-stored."""
    now = utcnow()
    existing = list(
        session.scalars(
            live_photos_query(now=now, settings=settings_of(session)).where(Photo.pet_id == pet.id)
        )
    )
    hashes = [(p.sha256, p.phash) for p in existing]
    # Byte-identical files are refused by the hash of their raw bytes, before any decoding: against the
    # pet's photos (as uploaded, or as stored) and against earlier files of this request.
    seen_raw = {p.source_sha256 for p in existing if p.source_sha256} | {p.sha256 for p in existing}
    refused_raw: dict[str, PhotoRejected] = {}  # files of this request refused for their content
    budget = DecodeBudget(limits.request_pixels)  # pixels this request may still decode, all files together
    room = limits.max_photos - len(existing)
    outcomes: list[FileOutcome] = []
    written: list[str] = []
    try:
        for incoming in files:
            raw_sha = ""
            shown = incoming.filename or ""
            outcome = FileOutcome(filename=shown)
            outcomes.append(outcome)
            try:
                validate_filename(incoming.filename)
                if room <= 0:
                    raise PhotoRejected(
                        "too_many_photos",
                        f"A pet can have at most {limits.max_photos} photos; delete some first.",
                    )
                if len(incoming.data) > limits.max_bytes:
                    raise PhotoRejected(
                        "file_too_large",
                        f"The file is larger than the limit of {limits.max_bytes:,} bytes.",
                    )
                raw_sha = hashlib.sha256(incoming.data).hexdigest()
                if raw_sha in refused_raw:  # a copy of a file refused earlier in this request: same reason
                    raise refused_raw[raw_sha]
                if raw_sha in seen_raw:
                    raise PhotoRejected(
                        "duplicate_photo",
                        "This file is byte for byte the same as a photo already uploaded (or sent twice).",
                    )
                clean = sanitize_photo(
                    incoming.data,
                    filename=incoming.filename,
                    content_type=incoming.content_type,
                    max_bytes=limits.max_bytes,
                    min_side=limits.min_side,
                    max_pixels=limits.max_pixels,
                    decode_budget=budget,
                )

                for sha, ph in hashes:
                    if sha == clean.sha256 or is_near_duplicate(ph, clean.phash):
                        raise PhotoRejected(
                            "duplicate_photo",
                            "This photo is the same as, or nearly the same as, one already uploaded.",
                        )
                seen_raw.add(raw_sha)  # only a file that is stored makes a later copy a duplicate
            except PhotoRejected as rejected:
                if raw_sha:
                    refused_raw[raw_sha] = rejected
                outcome.code = rejected.code
                outcome.detail = rejected.detail
                continue
            photo = Photo(
                pet_id=pet.id,
                owner_id=pet.owner_id,
                original_filename=shown,
                content_type=clean.content_type,
                size=len(clean.data),
                width=clean.width,
                height=clean.height,
                sha256=clean.sha256,
                phash=clean.phash,
                source_sha256=raw_sha,
                uploaded_at=now,
                expires_at=policy.expires_at("photo", now, settings=settings_of(session)),
            )
            photo.id = new_id()
            photo.storage_key = blobkeys.photo_key(
                owner_id=pet.owner_id, pet_id=pet.id, photo_id=photo.id, extension=clean.extension
            )
            blobs.put_bytes(photo.storage_key, clean.data)
            written.append(photo.storage_key)
            session.add(photo)
            outcome.photo = photo
            hashes.append((clean.sha256, clean.phash))
            room -= 1
        session.commit()
    except BaseException:
        session.rollback()
        for key in written:
            try:
                blobs.delete(key)
            except Exception:  # the orphan sweep removes what could not be removed here
                log.exception("could not remove blob %s after a failed upload", key)
        raise
    return outcomes


def open_photo(session: Session, *, blobs: BlobStore, owner_id: str, photo_id: str) -> tuple[Photo, BinaryIO]:
    """The owner's photo and a stream of its bytes."""
    photo = get_photo(session, owner_id=owner_id, photo_id=photo_id)
    return photo, blobs.open(photo.storage_key)


def _read_audited(
    session: Session,
    *,
    blobs: BlobStore,
    photo: Photo,
    actor_id: str | None,
    purpose: str,
    details: dict[str, Any] | None = None,
) -> bytes:
    """A photo's bytes, with the read written to the audit log under ``purpose``."""
    from petportrait.retention import audit

    data = blobs.get_bytes(photo.storage_key)
    audit.record(
        session,
        action="photo.read",
        actor_id=actor_id,
        subject_kind="photo",
        subject_id=photo.id,
        owner_id=photo.owner_id,
        purpose=purpose,
        details=details,
    )
    return data


def set_photo_masking(session: Session, *, owner_id: str, photo_id: str, masking: bool) -> Photo:
    """Turn training with the owner's photo's subject mask on or off."""
    photo = get_photo(session, owner_id=owner_id, photo_id=photo_id)
    photo.masking = masking
    session.flush()
    return photo


def photo_mask_overlay(session: Session, *, blobs: BlobStore, owner_id: str, photo_id: str) -> bytes:
    """The owner's photo with its subject mask drawn over it, as PNG bytes made now, in memory; the read of
    the photo is audited and nothing of the mask is stored."""
    import io

    from petportrait.ml.masks import SegmenterError, mask_function, overlay
    from petportrait.ml.photos import PhotoError, load_photo

    photo = get_photo(session, owner_id=owner_id, photo_id=photo_id)
    data = _read_audited(session, blobs=blobs, photo=photo, actor_id=owner_id, purpose="mask_preview")
    try:
        make_mask = mask_function(settings_of(session).ml.segmenter)
        image = load_photo(data)
        shown = overlay(image, make_mask(image))
    except (SegmenterError, PhotoError) as exc:
        raise ProblemError(str(exc), code="mask_unavailable", status=503, title="Unavailable") from None
    out = io.BytesIO()
    shown.save(out, "PNG")
    return out.getvalue()


def read_photos_for_likeness(
    session: Session, *, blobs: BlobStore, pet_id: str, photo_ids: list[str]
) -> list[bytes]:
    """The live photos a model was trained on, in memory, to score its likeness; each read is audited."""
    pet = session.get(Pet, pet_id)
    if pet is None:
        return []
    query = live_photos_query(settings=settings_of(session)).where(
        Photo.pet_id == pet.id, Photo.id.in_(photo_ids)
    )
    return [
        _read_audited(session, blobs=blobs, photo=photo, actor_id=None, purpose="likeness_eval")
        for photo in session.scalars(query.order_by(Photo.id))
    ]


def masking_of_photos(session: Session, *, pet_id: str, photo_ids: list[str]) -> dict[str, bool]:
    """Whether each of a pet's photos is trained with its subject mask, by photo id."""
    rows = session.execute(
        select(Photo.id, Photo.masking).where(Photo.pet_id == pet_id, Photo.id.in_(photo_ids))
    )
    return {photo_id: bool(masking) for photo_id, masking in rows}


def delete_photo(session: Session, *, blobs: BlobStore, owner_id: str, photo_id: str) -> None:
    """Delete the owner's photo now: blob first, then a tombstone and receipt (409 under a legal hold)."""
    tombstones.delete_now(
        session, blobs=blobs, kind="photo", item_id=photo_id, owner_id=owner_id, actor_id=owner_id
    )


def delete_pet(session: Session, *, blobs: BlobStore, owner_id: str, pet_id: str) -> None:
    """Delete the owner's pet now, with its photos, models and renders."""
    pet = get_pet(session, owner_id=owner_id, pet_id=pet_id)
    rows: list[tuple[str, Any]] = []
    for kind, model in registry_of(session).item_models.items():
        if hasattr(model, "pet_id"):
            query = select(model).where(model.pet_id == pet.id, model.owner_id == owner_id)
            rows.extend((kind, row) for row in session.scalars(query))
    for kind, row in rows:
        holds.ensure_not_held(session, kind=kind, item_id=row.id, owner_id=row.owner_id)
    targets = [pet.id, *(row.id for _, row in rows)]
    for job in session.scalars(select(Job).where(Job.target_id.in_(targets), Job.state.not_in(FINAL_STATES))):
        jobs_service.request_cancel(session, job=job)
    tombstones.delete_rows(session, blobs=blobs, rows=rows, actor_id=owner_id)
    session.delete(pet)
    emit(session, "pet.deleted", owner_id=owner_id, pet_id=pet.id)
    session.flush()


def delete_emptied_pets(session: Session, owners: Any) -> int:
    """Delete the pets of these accounts (a SELECT of ids) that no item refers to any more: what the
    sweeper clears of an erased account once its items are gone (a held item keeps its pet)."""
    from sqlalchemy import delete, exists

    remaining = [
        exists().where(model.pet_id == Pet.id)
        for model in registry_of(session).item_models.values()
        if hasattr(model, "pet_id")
    ]
    result = session.execute(
        delete(Pet)
        .where(Pet.owner_id.in_(owners), *(~clause for clause in remaining))
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def read_photos_for_training(
    session: Session,
    *,
    blobs: BlobStore,
    job_id: str,
    job_owner_id: str,
    pet_id: str,
    photo_ids: list[str],
) -> list[tuple[str, bytes]]:
    """A pet's live photos in memory, (photo id, bytes), for the training job of that pet's owner; each read
    is audited with its purpose. Nothing is written to disk: the bytes end with the job's process memory.

    This is the only path by which photo bytes reach a training job (the data policy's purpose limit):
    a job whose owner is not the pet's owner is refused.
    """
    pet = session.get(Pet, pet_id)
    if pet is None or pet.owner_id != job_owner_id:
        raise PermissionError(f"job {job_id} may not read photos of pet {pet_id}: not its owner's")
    now = utcnow()
    photos = list(
        session.scalars(
            live_photos_query(now=now, settings=settings_of(session))
            .where(Photo.pet_id == pet.id, Photo.id.in_(photo_ids))
            .order_by(Photo.id)
        )
    )
    read: list[tuple[str, bytes]] = []
    for photo in photos:
        data = _read_audited(
            session, blobs=blobs, photo=photo, actor_id=None, purpose="training", details={"job_id": job_id}
        )
        read.append((photo.id, data))
    session.commit()
    return read
