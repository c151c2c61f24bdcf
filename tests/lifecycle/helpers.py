"""Helpers of the lifecycle tests: items written the way a finished upload or job writes them."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from petportrait.accounts.models import Role, User
from petportrait.db import new_id, session_scope
from petportrait.pets.models import Pet, Photo
from petportrait.portraits.models import ModelState, PetModel, Render, RenderState
from petportrait.settings import Settings
from petportrait.storage.base import BlobStore
from petportrait.storage.local import LocalBlobStore
from petportrait.web.app import Services

DAY = timedelta(days=1)


def set_mtime(blobs: BlobStore, key: str, at: datetime) -> None:
    """Make a local blob look written at `at` (the simulated clock), as it would be in production."""
    assert isinstance(blobs, LocalBlobStore)
    stamp = at.timestamp()
    os.utime(blobs.root.joinpath(*key.split("/")), (stamp, stamp))


def put_blob(blobs: BlobStore, key: str, at: datetime, data: bytes | None = None) -> str:
    """Write a blob as if at `at`; returns its SHA-256."""
    payload = data if data is not None else f"bytes of {key}".encode()
    blobs.put_bytes(key, payload)
    if isinstance(blobs, LocalBlobStore):
        set_mtime(blobs, key, at)
    return hashlib.sha256(payload).hexdigest()


def add_user(session: Session, email: str | None = None, *, at: datetime, role: Role = Role.USER) -> User:
    user = User(
        email=email or f"{new_id()[:12]}@example.com",
        password_hash="x",
        role=role.value,
        created_at=at,
        email_verified_at=at,  # a person who verified the address (unverified accounts get no mail)
    )
    session.add(user)
    session.flush()
    return user


def add_pet(session: Session, owner_id: str, *, at: datetime, name: str = "Rex") -> Pet:
    pet = Pet(owner_id=owner_id, name=name, species="dog", created_at=at)
    session.add(pet)
    session.flush()
    return pet


def add_photo(
    session: Session, blobs: BlobStore, pet: Pet, *, at: datetime, days: float = 30, data: bytes | None = None
) -> Photo:
    photo_id = new_id()
    key = f"photos/{pet.owner_id}/{pet.id}/{photo_id}.jpg"
    payload = data if data is not None else f"photo {photo_id}".encode()
    sha = put_blob(blobs, key, at, payload)
    photo = Photo(
        id=photo_id,
        pet_id=pet.id,
        owner_id=pet.owner_id,
        storage_key=key,
        original_filename="a.jpg",
        content_type="image/jpeg",
        size=len(payload),
        width=512,
        height=512,
        sha256=sha,
        phash="0" * 16,
        uploaded_at=at,
        expires_at=at + timedelta(days=days),
    )
    session.add(photo)
    session.flush()
    return photo


def add_model(
    session: Session, blobs: BlobStore, pet: Pet, *, at: datetime, days: float = 7, job_id: str | None = None
) -> PetModel:
    model_id = new_id()
    job_id = job_id or new_id()
    key = f"models/{pet.owner_id}/{job_id}/a1/{model_id}.safetensors"
    sha = put_blob(blobs, key, at)
    model = PetModel(
        id=model_id,
        pet_id=pet.id,
        owner_id=pet.owner_id,
        state=ModelState.READY.value,
        base_model="preview",
        is_preview=True,
        token="sks",
        species="dog",
        photo_ids=[],
        storage_key=key,
        size=10,
        sha256=sha,
        created_at=at,
        trained_at=at,
        expires_at=at + timedelta(days=days),
    )
    session.add(model)
    session.flush()
    return model


def add_render(
    session: Session,
    blobs: BlobStore,
    pet: Pet,
    *,
    at: datetime,
    model_id: str | None = None,
    days: float = 30,
    data: bytes | None = None,
) -> Render:
    render_id = new_id()
    job_id = new_id()
    key = f"renders/{pet.owner_id}/{job_id}/a1/{render_id}.png"
    payload = data if data is not None else f"render {render_id}".encode()
    sha = put_blob(blobs, key, at, payload)
    render = Render(
        id=render_id,
        model_id=model_id,
        pet_id=pet.id,
        owner_id=pet.owner_id,
        job_id=job_id,
        state=RenderState.READY.value,
        style="watercolour",
        seed=1,
        width=64,
        height=64,
        params={},
        storage_key=key,
        content_type="image/png",
        size=len(payload),
        sha256=sha,
        created_at=at,
        rendered_at=at,
        expires_at=at + timedelta(days=days),
    )
    session.add(render)
    session.flush()
    return render


@dataclass
class Household:
    """One person with a pet, a photo, a model and a render, all made at `at`."""

    user_id: str
    pet_id: str
    photo_id: str
    model_id: str
    render_id: str
    keys: dict[str, str]


def add_household(services: Services, *, at: datetime, email: str | None = None) -> Household:
    with session_scope(services.session_factory) as session:
        user = add_user(session, email, at=at)
        pet = add_pet(session, user.id, at=at)
        photo = add_photo(session, services.blobs, pet, at=at)
        model = add_model(session, services.blobs, pet, at=at)
        render = add_render(session, services.blobs, pet, at=at, model_id=model.id)
        return Household(
            user_id=user.id,
            pet_id=pet.id,
            photo_id=photo.id,
            model_id=model.id,
            render_id=render.id,
            keys={
                "photo": photo.storage_key,
                "model": str(model.storage_key),
                "render": str(render.storage_key),
            },
        )


def settings_with(services: Services, **retention: float) -> Settings:
    """The services' settings with some retention values changed."""
    return services.settings.model_copy(
        update={"retention": services.settings.retention.model_copy(update=retention)}
    )
