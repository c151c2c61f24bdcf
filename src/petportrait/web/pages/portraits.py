"""Styles (presets with example images, a free prompt, count and seed) and the portrait gallery."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Response
from fastapi.responses import FileResponse, StreamingResponse

from petportrait.errors import Conflict, NotFound, ProblemError
from petportrait.jobs import service as jobs_service
from petportrait.jobs.models import Job
from petportrait.ml.styles import list_styles
from petportrait.pets import service as pets_service
from petportrait.pets.models import Pet
from petportrait.portraits import quotas
from petportrait.portraits import service as portraits_service
from petportrait.portraits.models import Render, RenderState
from petportrait.portraits.requests import MAX_IMAGES, MAX_SEED, RenderRequest
from petportrait.rights import downloads
from petportrait.web.pages import examples
from petportrait.web.pages.common import FormPage, Page, PageDep, PageRoute, preview_in_use
from petportrait.web.pages.pets import Training, training_of

router = APIRouter(route_class=PageRoute, include_in_schema=False)
MAX_COUNT = MAX_IMAGES
PENDING = (RenderState.QUEUED.value, RenderState.RENDERING.value)


@dataclass
class PetChoice:
    pet: Pet
    training: Training

    @property
    def can_render(self) -> bool:
        return self.training.status in ("ready", "expired", "running")


def _choices(page: Page) -> list[PetChoice]:
    return [
        PetChoice(pet=pet, training=training_of(page.session, pet=pet))
        for pet in pets_service.list_pets(page.session, owner_id=page.user.id)
    ]


def _styles_context(page: Page) -> dict[str, Any]:
    settings = page.settings
    show_examples = preview_in_use(settings)
    making = examples.ensure_started(settings) if show_examples else False
    ready = set() if not show_examples else {s.name for s in list_styles()} - set(examples.missing(settings))
    return {
        "styles": list_styles(),
        "show_examples": show_examples,
        "examples_ready": ready,
        "examples_making": making,
        "examples_failure": examples.failure(settings) if show_examples else None,
    }


@router.get("/styles")
def styles_page(page: PageDep, pet: str | None = None) -> Response:
    """The style presets with an example each, and the form that renders portraits of a pet."""
    choices = _choices(page)
    return page.render(
        "styles.html",
        title="Styles",
        choices=choices,
        selected_pet=pet,
        errors={},
        form={"prompt": "", "count": 1, "seed": "", "styles": []},
        max_count=MAX_COUNT,
        **_styles_context(page),
    )


@router.get("/styles/{name}/example")
def example_fragment(name: str, page: PageDep) -> Response:
    """One example, or its placeholder while it is being made (htmx asks again every few seconds)."""
    _ = page.user
    style = next((s for s in list_styles() if s.name == name), None)
    if style is None:
        raise NotFound("There is no such style.")
    settings = page.settings
    examples.ensure_started(settings)
    ready = examples.example_path(settings, name).is_file()
    return page.render("_example.html", s=style, ready=ready, failure=examples.failure(settings))


@router.get("/styles/{name}/example.png")
def example_image(name: str, page: PageDep) -> Response:
    """A preset's example image (made by the preview model)."""
    _ = page.user
    if name not in {s.name for s in list_styles()}:
        raise NotFound("There is no such style.")
    path = examples.example_path(page.settings, name)
    if not path.is_file():
        raise NotFound("This example is not made yet.")
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


# Which form field a refused render request's code belongs to (the rest go next to the styles).
_FIELD_OF_CODE = {
    "prompt_refused": "prompt",
    "prompt_too_long": "prompt",
    "negative_prompt_too_long": "prompt",
    "style_or_prompt": "style",
    "unknown_style": "style",
    "invalid_count": "count",
    "invalid_seed": "seed",
    "render_quota_exceeded": "count",
    "training_quota_exceeded": "count",
    "render_steps_too_many": "style",
    "render_size_out_of_range": "style",
}


@router.post("/render")
def render(
    page: FormPage,
    pet_id: Annotated[str, Form(max_length=64)] = "",
    style: Annotated[list[str] | None, Form()] = None,
    prompt: Annotated[str, Form(max_length=10_000)] = "",
    count: Annotated[str, Form(max_length=8)] = "1",
    seed: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """Queue portraits: one request per chosen style (or one for the free prompt alone), each checked by
    the portraits service exactly as the API's request is; nothing is queued unless every one passes."""
    user = page.user
    chosen = list(dict.fromkeys(s for s in style or [] if s))  # each style once, however often it was sent
    errors: dict[str, str] = {}
    pet: Pet | None = None
    training: Training | None = None
    try:
        pet = pets_service.get_pet(page.session, owner_id=user.id, pet_id=pet_id)
        training = training_of(page.session, pet=pet)
    except NotFound:
        errors["pet_id"] = "Choose one of your pets."
    if training is not None and training.status not in ("ready", "expired", "running"):
        errors["pet_id"] = "This pet has no trained model yet: train it on its page first."
    try:
        number = int(count)
    except ValueError:
        errors["count"] = f"The number of portraits must be a whole number from 1 to {MAX_COUNT}."
        number = 1
    seed_value: int | None = None
    if seed.strip():
        try:
            seed_value = int(seed)
        except ValueError:
            errors["seed"] = "The seed must be a whole number, or left empty."
    requests = [
        RenderRequest(
            style=name,
            prompt=prompt,
            count=number,
            seed=None if seed_value is None else (seed_value + index * MAX_COUNT) % (MAX_SEED + 1),
        )
        for index, name in enumerate(chosen or [None])
    ]
    screens = page.services.registry.prompt_screens.values()
    for request in requests:
        for problem in request.problems(page.settings, screens):
            errors.setdefault(_FIELD_OF_CODE.get(problem.code, "style"), problem.detail)

    def form_again(status: int) -> Response:
        """The styles page with the form as sent and a sentence by each field that was wrong."""
        return page.render(
            "styles.html",
            status=status,
            title="Styles",
            choices=_choices(page),
            selected_pet=pet_id,
            errors=errors,
            form={"prompt": prompt, "count": count, "seed": seed, "styles": chosen},
            max_count=MAX_COUNT,
            **_styles_context(page),
        )

    if errors or pet is None or training is None or training.model is None:
        return form_again(422)
    model_id = training.model.id
    try:  # the whole form at once: the styles together must fit the account's quota of waiting images
        quotas.ensure_render_room(
            page.session, owner_id=user.id, adding=number * max(1, len(chosen)), settings=page.settings
        )
    except ProblemError as exc:
        errors["count"] = exc.detail
        return form_again(exc.status)
    retraining = False
    for request in requests:
        try:
            plan = portraits_service.request_render(
                page.session, owner_id=user.id, model_id=model_id, request=request, settings=page.settings
            )
        except ProblemError as exc:  # a model that cannot render: said next to the form
            page.session.rollback()
            errors[_FIELD_OF_CODE.get(exc.code, "style")] = exc.detail
            return form_again(exc.status)
        retraining = retraining or plan.retraining
        model_id = plan.model.id  # a retrained model serves the next styles too
        page.session.commit()
        jobs_service.send(page.services.session_factory, page.services.queue, plan.to_enqueue)
    return page.redirect("/portraits?retraining=1" if retraining else "/portraits")


def gallery_groups(
    renders: list[Render], *, pets: dict[str, Pet], titles: dict[str, str]
) -> list[dict[str, Any]]:
    """The portraits grouped by pet (in the order of the pets), then by style (newest group first)."""
    by_pet: dict[str, dict[str, list[Render]]] = {}
    for render in renders:
        label = titles.get(render.style or "", "Own description") if render.style else "Own description"
        by_pet.setdefault(render.pet_id, {}).setdefault(label, []).append(render)
    order = [pet_id for pet_id in pets if pet_id in by_pet] + [p for p in by_pet if p not in pets]
    return [
        {
            "key": pet_id,
            "pet": pets.get(pet_id),
            "styles": [{"label": label, "renders": items} for label, items in by_pet[pet_id].items()],
        }
        for pet_id in order
    ]


def _gallery_context(page: Page) -> dict[str, Any]:
    user = page.user
    renders = portraits_service.list_renders(page.session, owner_id=user.id, settings=page.settings)
    pets = {p.id: p for p in pets_service.list_pets(page.session, owner_id=user.id)}
    expired = []
    for pet in pets.values():
        training = training_of(page.session, pet=pet)
        if training.status == "expired":
            photos = pets_service.list_photos(page.session, owner_id=user.id, pet_id=pet.id)
            expired.append({"pet": pet, "training": training, "photos": photos})
    titles = {s.name: s.title for s in list_styles()}
    jobs: dict[str, Job] = {}  # each portrait being painted, with its job's steps
    for r in renders:
        if r.state == RenderState.RENDERING.value and r.job_id:
            with contextlib.suppress(NotFound):
                jobs[r.id] = jobs_service.get_job_for_owner(page.session, owner_id=user.id, job_id=r.job_id)
    return {
        "renders": renders,
        "groups": gallery_groups(renders, pets=pets, titles=titles),
        "jobs": jobs,
        "any_preview": any(r.is_preview for r in renders),
        "pets": pets,
        "titles": titles,
        "pending": any(r.state in PENDING for r in renders),
        "expired_models": expired,
        "min_photos": portraits_service.MIN_TRAINING_PHOTOS,
    }


@router.get("/portraits")
def portraits_page(page: PageDep, retraining: str | None = None) -> Response:
    """The person's portraits, each with its remaining days, download, delete and licence."""
    return page.render(
        "portraits.html", title="My portraits", retraining=bool(retraining), **_gallery_context(page)
    )


@router.get("/portraits/gallery")
def gallery_fragment(page: PageDep) -> Response:
    """The gallery alone (htmx refreshes it while portraits are being made)."""
    return page.render("_gallery.html", **_gallery_context(page))


def _ready_render(page: Page, render_id: str) -> Render:
    render = portraits_service.get_render(
        page.session, owner_id=page.user.id, render_id=render_id, settings=page.settings
    )
    if render.state != RenderState.READY.value or not render.storage_key:
        raise Conflict(f"This portrait is not ready yet (it is {render.state}).", code="render_not_ready")
    return render


def _stream(page: Page, key: str) -> Iterator[bytes]:
    stream = page.services.blobs.open(key)
    try:
        while chunk := stream.read(64 * 1024):
            yield chunk
    finally:
        stream.close()


@router.get("/portraits/{render_id}/image")
def portrait_image(render_id: str, page: PageDep) -> Response:
    """The portrait, shown in the page; refused (451) once its licence is revoked, like every other door."""
    render = _ready_render(page, render_id)
    assert render.storage_key is not None
    downloads.ensure_licence(page.session, render=render, settings=page.settings)
    page.session.commit()
    return StreamingResponse(
        _stream(page, render.storage_key),
        media_type=render.content_type or "image/png",
        # revalidated on each view, so that a revocation takes effect at once, not after a cached copy
        headers={"Cache-Control": "private, no-cache"},
    )


@router.get("/portraits/{render_id}/download")
def portrait_download(render_id: str, page: PageDep) -> Response:
    """The portrait as a file to keep, with a signed C2PA manifest naming its licence (refused if revoked)."""
    render = _ready_render(page, render_id)
    base_url = page.settings.public_base_url
    data, licence = downloads.signed_render(
        page.session, render=render, blobs=page.services.blobs, settings=page.settings, base_url=base_url
    )
    return page.finish(
        Response(
            data,
            media_type="image/png",
            headers={
                "Content-Disposition": f'attachment; filename="portrait-{render.id}.png"',
                "Link": f'<{base_url}/licences/{licence.id}>; rel="license"',
            },
        )
    )


@router.post("/portraits/{render_id}/delete")
def delete_portrait(render_id: str, page: FormPage) -> Response:
    """Delete a portrait now."""
    portraits_service.delete_render(
        page.session, blobs=page.services.blobs, owner_id=page.user.id, render_id=render_id
    )
    if page.is_htmx:
        return page.finish(Response(status_code=200, content=""))
    return page.redirect("/portraits")
