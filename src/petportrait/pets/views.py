"""Pets API: pets, photo uploads, photo reads and deletes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Response, UploadFile, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from petportrait.accounts.deps import CurrentUser
from petportrait.errors import InvalidInput
from petportrait.http import BlobsDep, PageQuery, SessionDep, SettingsDep, iter_chunks
from petportrait.multipart import CappedUploadRoute
from petportrait.paging import Page
from petportrait.pets import service
from petportrait.pets.models import Pet, Photo, Species
from petportrait.pets.schemas import (
    PetCreate,
    PetOut,
    PhotoMaskingUpdate,
    PhotoOut,
    UploadOut,
    UploadResult,
)
from petportrait.ratelimit import LimiterDep
from petportrait.retention import audit

router = APIRouter(tags=["pets"], route_class=CappedUploadRoute)


def pet_out(pet: Pet, photo_count: int = 0) -> PetOut:
    return PetOut(
        id=pet.id, name=pet.name, species=pet.species, created_at=pet.created_at, photo_count=photo_count
    )


def photo_out(photo: Photo) -> PhotoOut:
    return PhotoOut(
        id=photo.id,
        pet_id=photo.pet_id,
        original_filename=photo.original_filename,
        content_type=photo.content_type,
        size=photo.size,
        width=photo.width,
        height=photo.height,
        sha256=photo.sha256,
        uploaded_at=photo.uploaded_at,
        expires_at=photo.expires_at,
        content_url=f"/api/v1/photos/{photo.id}/content",
        masking=photo.masking is not False,
        mask_url=f"/api/v1/photos/{photo.id}/mask",
    )


async def read_incoming(files: list[UploadFile], *, max_bytes: int) -> list[service.IncomingFile]:
    """Read each uploaded file up to the size limit plus one byte (so that an oversize file is detected)."""
    incoming = []
    for upload in files:
        data = await upload.read(max_bytes + 1)
        await upload.close()
        incoming.append(
            service.IncomingFile(filename=upload.filename, content_type=upload.content_type, data=data)
        )
    return incoming


@router.post("/pets", status_code=status.HTTP_201_CREATED, response_model=PetOut)
def create_pet(body: PetCreate, user: CurrentUser, session: SessionDep, settings: SettingsDep) -> PetOut:
    """Create a pet (429 `pet_quota_exceeded` beyond the account's quota of pets)."""
    return pet_out(
        service.create_pet(
            session, owner_id=user.id, name=body.name, species=Species(body.species), settings=settings
        )
    )


@router.get("/pets", response_model=Page[PetOut])
def list_pets(user: CurrentUser, session: SessionDep, page: PageQuery) -> Page[PetOut]:
    """The signed-in person's pets, oldest first (paged)."""
    pets, cursor = service.page_pets(session, owner_id=user.id, page=page)
    return Page(
        items=[pet_out(p, service.count_live_photos(session, pet_id=p.id)) for p in pets], next_cursor=cursor
    )


@router.get("/pets/{pet_id}", response_model=PetOut)
def get_pet(pet_id: str, user: CurrentUser, session: SessionDep) -> PetOut:
    """One of the signed-in person's pets."""
    pet = service.get_pet(session, owner_id=user.id, pet_id=pet_id)
    return pet_out(pet, service.count_live_photos(session, pet_id=pet.id))


@router.delete("/pets/{pet_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_pet(pet_id: str, user: CurrentUser, session: SessionDep, blobs: BlobsDep) -> Response:
    """Delete a pet and its photos now."""
    service.delete_pet(session, blobs=blobs, owner_id=user.id, pet_id=pet_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/pets/{pet_id}/photos",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadOut,
    responses={
        422: {"description": "Every file was rejected (problem+json with per-file results)"},
        429: {"description": "Too many uploads: wait for Retry-After seconds"},
    },
)
async def upload_photos(
    pet_id: str,
    user: CurrentUser,
    session: SessionDep,
    blobs: BlobsDep,
    settings: SettingsDep,
    limiter: LimiterDep,
    files: Annotated[
        list[UploadFile] | None, File(description="One or more photos (JPEG, PNG, WebP)")
    ] = None,
) -> Response:
    """Upload photos of a pet; each file is stored (sanitised) or rejected with a reason."""
    await run_in_threadpool(
        limiter.take, ("uploads_per_account", user.id), detail="Too many uploads from this account."
    )
    pet = await run_in_threadpool(service.get_pet, session, owner_id=user.id, pet_id=pet_id)
    if not files:
        raise InvalidInput(
            "Send one or more files in the multipart field 'files'.", code="no_files", status=400
        )
    incoming = await read_incoming(files, max_bytes=settings.security.max_upload_bytes)
    limits = service.UploadLimits.from_settings(settings)
    outcomes = await run_in_threadpool(
        service.upload_photos, session, blobs=blobs, pet=pet, files=incoming, limits=limits
    )
    results = [
        UploadResult(
            filename=o.filename,
            status="stored" if o.photo is not None else "rejected",
            photo=photo_out(o.photo) if o.photo is not None else None,
            code=o.code,
            detail=o.detail,
        )
        for o in outcomes
    ]
    stored = sum(1 for r in results if r.status == "stored")
    body = UploadOut(stored=stored, rejected=len(results) - stored, results=results)
    if stored == 0:
        codes = {r.code for r in results}
        code = codes.pop() if len(codes) == 1 else "photos_rejected"
        detail = results[0].detail if len(results) == 1 else "None of the files could be stored; see results."
        raise InvalidInput(
            detail or "rejected", code=code or "photos_rejected", **body.model_dump(mode="json")
        )
    return JSONResponse(body.model_dump(mode="json"), status_code=status.HTTP_201_CREATED)


@router.get("/pets/{pet_id}/photos", response_model=Page[PhotoOut])
def list_photos(pet_id: str, user: CurrentUser, session: SessionDep, page: PageQuery) -> Page[PhotoOut]:
    """A pet's photos that have not expired, each with its deletion date (oldest first, paged)."""
    photos, cursor = service.page_photos(session, owner_id=user.id, pet_id=pet_id, page=page)
    return Page(items=[photo_out(p) for p in photos], next_cursor=cursor)


@router.get("/photos/{photo_id}", response_model=PhotoOut)
def get_photo(photo_id: str, user: CurrentUser, session: SessionDep) -> PhotoOut:
    """One photo's details."""
    return photo_out(service.get_photo(session, owner_id=user.id, photo_id=photo_id))


@router.get("/photos/{photo_id}/content", response_class=StreamingResponse)
def photo_content(
    photo_id: str, user: CurrentUser, session: SessionDep, blobs: BlobsDep
) -> StreamingResponse:
    """The photo's bytes (as stored: sanitised, without metadata)."""
    photo, stream = service.open_photo(session, blobs=blobs, owner_id=user.id, photo_id=photo_id)
    audit.record(
        session,
        action="photo.read",
        actor_id=user.id,
        subject_kind="photo",
        subject_id=photo.id,
        owner_id=photo.owner_id,
        purpose="owner_view",
    )
    session.commit()  # the read is on record before a byte leaves

    return StreamingResponse(
        iter_chunks(stream),
        media_type=photo.content_type,
        headers={"Content-Length": str(photo.size), "Cache-Control": "private, no-store"},
    )


@router.patch("/photos/{photo_id}", response_model=PhotoOut)
def update_photo(photo_id: str, body: PhotoMaskingUpdate, user: CurrentUser, session: SessionDep) -> PhotoOut:
    """Turn training with the photo's subject mask on or off (``{"masking": false}``)."""
    photo = service.set_photo_masking(session, owner_id=user.id, photo_id=photo_id, masking=body.masking)
    session.commit()
    return photo_out(photo)


@router.get("/photos/{photo_id}/mask", response_class=Response)
def photo_mask(photo_id: str, user: CurrentUser, session: SessionDep, blobs: BlobsDep) -> Response:
    """The photo with its subject mask over it (background dimmed), a PNG made on request and never stored."""
    png = service.photo_mask_overlay(session, blobs=blobs, owner_id=user.id, photo_id=photo_id)
    session.commit()  # the read of the photo is on record
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, no-store"})


@router.delete("/photos/{photo_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_photo(photo_id: str, user: CurrentUser, session: SessionDep, blobs: BlobsDep) -> Response:
    """Delete a photo now."""
    service.delete_photo(session, blobs=blobs, owner_id=user.id, photo_id=photo_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
