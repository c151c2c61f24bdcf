"""Helpers of the consent and rights tests: accounts with roles, and items written the way a finished
upload or render job writes them (rows and blobs), without training a model."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select, update

from petportrait.accounts.models import Role, User
from petportrait.clock import utcnow
from petportrait.db import session_scope
from petportrait.pets.models import Photo
from petportrait.portraits.models import PetModel, Render
from petportrait.retention.models import AuditEntry
from petportrait.web.app import Services
from tests.conftest import sign_up
from tests.lifecycle.helpers import add_model, add_pet, add_photo, add_render


def png_bytes(colour: tuple[int, int, int] = (180, 120, 60), size: int = 64) -> bytes:
    """A small real PNG."""
    out = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(out, "PNG")
    return out.getvalue()


def jpeg_bytes(colour: tuple[int, int, int] = (90, 140, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(out, "JPEG")
    return out.getvalue()


def user_id(services: Services, email: str) -> str:
    with session_scope(services.session_factory) as session:
        found = session.scalar(select(User.id).where(User.email == email))
        assert found is not None
        return found


def staff(client: TestClient, services: Services, role: Role) -> dict[str, str]:
    """Sign up a staff account with this role; returns its auth headers."""
    email = f"{role.value.replace('_', '-')}@staff.example.com"
    headers = sign_up(client, email)
    with session_scope(services.session_factory) as session:
        session.execute(update(User).where(User.email == email).values(role=role.value))
    return headers


@dataclass
class Items:
    """One person's pet with a photo, a model and a render."""

    owner_id: str
    pet_id: str
    photo_id: str
    model_id: str
    render_id: str

    def ref(self, kind: str) -> str:
        return {"photo": self.photo_id, "model": self.model_id, "render": self.render_id}[kind]


def add_items(services: Services, owner_id: str, *, at: datetime | None = None, colour: int = 60) -> Items:
    """A pet, a photo, a model and a ready render (a real PNG) of the person, as finished jobs leave them."""
    at = at or utcnow()
    with session_scope(services.session_factory) as session:
        pet = add_pet(session, owner_id, at=at)
        photo = add_photo(session, services.blobs, pet, at=at, data=jpeg_bytes())
        model = add_model(session, services.blobs, pet, at=at)
        render = add_render(
            session, services.blobs, pet, at=at, model_id=model.id, data=png_bytes((180, 120, colour))
        )
        render.prompt = "a portrait of {pet} in watercolour"
        return Items(owner_id, pet.id, photo.id, model.id, render.id)


def audit_entries(services: Services, *, action: str, subject_id: str | None = None) -> list[AuditEntry]:
    with session_scope(services.session_factory) as session:
        query = select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
        if subject_id is not None:
            query = query.where(AuditEntry.subject_id == subject_id)
        return list(session.scalars(query))


def exists(services: Services, model: Any, item_id: str) -> bool:
    with session_scope(services.session_factory) as session:
        return session.get(model, item_id) is not None


__all__ = ["PetModel", "Photo", "Render"]
