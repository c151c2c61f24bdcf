"""Downloads of a portrait: refused once its licence is revoked, otherwise signed with a C2PA manifest."""

from __future__ import annotations

from sqlalchemy.orm import Session

from petportrait.errors import ProblemError
from petportrait.portraits.models import PetModel, Render
from petportrait.rights import provenance
from petportrait.rights import service as rights_service
from petportrait.rights.models import Licence, LicenceStatus
from petportrait.settings import Settings
from petportrait.storage.base import BlobStore


class LicenceRevoked(ProblemError):
    status = 451
    code = "licence_revoked"
    title = "Licence revoked"


def ensure_licence(session: Session, *, render: Render, settings: Settings) -> Licence:
    """The render's licence (made now for a ready render stored before licences existed); 451 if revoked."""
    licence = rights_service.licence_for_render(session, render_id=render.id)
    if licence is None:
        model = session.get(PetModel, render.model_id) if render.model_id else None
        licence = rights_service.record_generation(session, render=render, model=model, settings=settings)
    if licence.status == LicenceStatus.REVOKED.value:
        session.commit()  # a revocation settled just now stays settled although the request fails
        raise LicenceRevoked(
            "The licence of this portrait was revoked under the content policy, so it can no longer be "
            "downloaded. Your notices say why and how to appeal.",
            licence_id=licence.id,
            case_id=licence.revoked_by_case_id,
            notices_url="/api/v1/me/notices",
        )
    return licence


def signed_render(
    session: Session, *, render: Render, blobs: BlobStore, settings: Settings, base_url: str
) -> tuple[bytes, Licence]:
    """The render's PNG with a signed manifest naming its licence and generator."""
    assert render.storage_key
    licence = ensure_licence(session, render=render, settings=settings)
    generation = rights_service.generation_of(session, licence)
    generator = (
        "petportrait preview model" if generation.is_preview else (generation.base_model or "petportrait")
    )
    manifest = provenance.manifest_definition(
        title=f"portrait-{render.id}.png",
        licence_id=licence.id,
        verify_url=f"{base_url.rstrip('/')}/licences/{licence.id}",
        generator=f"petportrait {generator} (fine-tuned on the holder's pet)",
        content_sha256=licence.content_sha256,
    )
    data = blobs.get_bytes(render.storage_key)
    return provenance.sign_png(
        data, material=provenance.signing_material(settings), manifest=manifest
    ), licence
