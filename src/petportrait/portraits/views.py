"""Portraits API: train a pet's model, render portraits, read and delete both; list the styles."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from petportrait.accounts.deps import CurrentUser
from petportrait.http import BlobsDep, PageQuery, ServicesDep, SessionDep, SettingsDep
from petportrait.jobs import service as jobs_service
from petportrait.jobs.schemas import job_out
from petportrait.ml.styles import list_styles
from petportrait.paging import Page
from petportrait.portraits import service
from petportrait.portraits.models import JobKind, PetModel, Render
from petportrait.portraits.requests import RenderRequest
from petportrait.portraits.schemas import (
    ModelOut,
    RenderCreate,
    RenderOut,
    RenderRequestOut,
    StyleOut,
    TrainOut,
)

router = APIRouter(tags=["portraits"])


def model_out(session: Session, model: PetModel) -> ModelOut:
    job = service.current_job(session, kind=JobKind.TRAIN, target_id=model.id)
    return ModelOut(
        id=model.id,
        pet_id=model.pet_id,
        state=model.state,
        base_model=model.base_model,
        is_preview=model.is_preview,
        retrained_from=model.retrained_from,
        created_at=model.created_at,
        trained_at=model.trained_at,
        expires_at=model.expires_at,
        job_id=job.id if job is not None else None,
        likeness=model.likeness,
    )


def render_out(render: Render) -> RenderOut:
    return RenderOut(
        id=render.id,
        model_id=render.model_id,
        pet_id=render.pet_id,
        job_id=render.job_id,
        state=render.state,
        style=render.style,
        prompt=render.prompt,
        seed=render.seed,
        width=render.width,
        height=render.height,
        is_preview=render.is_preview,
        params=render.params or {},
        created_at=render.created_at,
        rendered_at=render.rendered_at,
        expires_at=render.expires_at,
        content_url=f"/api/v1/renders/{render.id}/content",
    )


@router.post("/pets/{pet_id}/models", status_code=status.HTTP_202_ACCEPTED, response_model=TrainOut)
def train_model(
    pet_id: str, user: CurrentUser, session: SessionDep, settings: SettingsDep, services: ServicesDep
) -> JSONResponse:
    """Train a model of the pet from its current photos (runs as a job; follow its events)."""
    model, job = service.request_training(session, owner_id=user.id, pet_id=pet_id, settings=settings)
    session.commit()
    jobs_service.send(services.session_factory, services.queue, [job.id])
    body = TrainOut(model=model_out(session, model), job=job_out(job))
    return JSONResponse(body.model_dump(mode="json"), status_code=status.HTTP_202_ACCEPTED)


@router.get("/pets/{pet_id}/models", response_model=Page[ModelOut])
def list_models(pet_id: str, user: CurrentUser, session: SessionDep, page: PageQuery) -> Page[ModelOut]:
    """The pet's models that have not expired, newest first (paged)."""
    models, cursor = service.page_models(session, owner_id=user.id, pet_id=pet_id, page=page)
    return Page(items=[model_out(session, m) for m in models], next_cursor=cursor)


@router.get("/models/{model_id}", response_model=ModelOut)
def get_model(model_id: str, user: CurrentUser, session: SessionDep, settings: SettingsDep) -> ModelOut:
    """A model's state and when its weights are deleted (`expires_at`, 7 days after training)."""
    return model_out(
        session, service.get_model(session, owner_id=user.id, model_id=model_id, settings=settings)
    )


@router.delete("/models/{model_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_model(model_id: str, user: CurrentUser, session: SessionDep, blobs: BlobsDep) -> Response:
    """Delete a model's weights now (its renders stay)."""
    service.delete_model(session, blobs=blobs, owner_id=user.id, model_id=model_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/models/{model_id}/renders", status_code=status.HTTP_202_ACCEPTED, response_model=RenderRequestOut
)
def create_renders(
    model_id: str,
    body: RenderCreate,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    services: ServicesDep,
) -> JSONResponse:
    """Render portraits from a style or prompt; an expired model is retrained first (the answer says so)."""
    plan = service.request_render(
        session,
        owner_id=user.id,
        model_id=model_id,
        request=RenderRequest(**body.model_dump()),
        settings=settings,
    )
    session.commit()
    jobs_service.send(services.session_factory, services.queue, plan.to_enqueue)
    out = RenderRequestOut(
        model_id=plan.model.id,
        retraining=plan.retraining,
        notice=plan.notice,
        renders=[render_out(r) for r in plan.renders],
        job=job_out(plan.job),
        training_job=job_out(plan.training_job) if plan.training_job is not None else None,
    )
    return JSONResponse(out.model_dump(mode="json"), status_code=status.HTTP_202_ACCEPTED)


@router.get("/renders", response_model=Page[RenderOut])
def list_renders(
    user: CurrentUser, session: SessionDep, page: PageQuery, pet_id: str | None = None
) -> Page[RenderOut]:
    """The signed-in person's renders that have not expired (optionally of one pet), newest first."""
    renders, cursor = service.page_renders(session, owner_id=user.id, pet_id=pet_id, page=page)
    return Page(items=[render_out(r) for r in renders], next_cursor=cursor)


@router.get("/renders/{render_id}", response_model=RenderOut)
def get_render(render_id: str, user: CurrentUser, session: SessionDep, settings: SettingsDep) -> RenderOut:
    """A render's state, parameters and when it is deleted (`expires_at`, 30 days after rendering)."""
    return render_out(service.get_render(session, owner_id=user.id, render_id=render_id, settings=settings))


@router.delete("/renders/{render_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_render(render_id: str, user: CurrentUser, session: SessionDep, blobs: BlobsDep) -> Response:
    """Delete a render now."""
    service.delete_render(session, blobs=blobs, owner_id=user.id, render_id=render_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/styles", response_model=list[StyleOut])
def styles() -> list[StyleOut]:
    """The style presets."""
    return [
        StyleOut(name=s.name, title=s.title, prompt=s.prompt, negative_prompt=s.negative_prompt)
        for s in list_styles()
    ]
