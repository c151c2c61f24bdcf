"""Styles (presets with example images, a free prompt, count and seed) and the portrait gallery."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Response
from fastapi.responses import FileResponse, StreamingResponse

from petportrait.errors import Conflict, NotFound, ProblemError
from petportrait.ml.styles import Style, list_styles
from petportrait.pets import service as pets_service
from petportrait.pets.models import Pet
from petportrait.portraits import quotas
from petportrait.portraits import service as portraits_service
from petportrait.portraits.models import Render, RenderState
from petportrait.rights import downloads
from petportrait.rights import policy as content_policy
from petportrait.web.pages import examples
from petportrait.web.pages.common import FormPage, Page, PageDep, PageRoute, preview_in_use
from petportrait.web.pages.pets import Training, enqueue, training_of

router = APIRouter(route_class=PageRoute, include_in_schema=False)
MAX_COUNT = 4
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


@router.post("/render")
def render(
    page: FormPage,
    pet_id: Annotated[str, Form(max_length=64)] = "",
    style: Annotated[list[str] | None, Form()] = None,
    prompt: Annotated[str, Form(max_length=2000)] = "",
    count: Annotated[str, Form(max_length=8)] = "1",
    seed: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """Queue portraits: one request per chosen style (or one for the free prompt alone)."""
    user = page.user
    chosen = list(dict.fromkeys(s for s in style or [] if s))  # each style once, however often it was sent
    known: dict[str, Style] = {s.name: s for s in list_styles()}
    errors: dict[str, str] = {}
    prompt = prompt.strip()
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
        content_policy.screen_prompt(prompt or None, page.settings)
    except ProblemError as exc:
        errors["prompt"] = exc.detail
    if not chosen and not prompt:
        errors["style"] = "Choose at least one style, or describe a portrait in the prompt box."
    if any(s not in known for s in chosen):
        errors["style"] = "One of the chosen styles does not exist."
    try:
        number = int(count)
        if not 1 <= number <= MAX_COUNT:
            raise ValueError
    except ValueError:
        errors["count"] = f"The number of portraits must be a whole number from 1 to {MAX_COUNT}."
        number = 1
    seed_value: int | None = None
    if seed.strip():
        try:
            seed_value = int(seed)
            if not 0 <= seed_value < 2**31 - MAX_COUNT * 10:
                raise ValueError
        except ValueError:
            errors["seed"] = "The seed must be a whole number from 0 to 2,000,000,000, or left empty."

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
    for index, name in enumerate(chosen or [None]):
        try:
            plan = portraits_service.request_render(
                page.session,
                owner_id=user.id,
                model_id=model_id,
                style=name,
                prompt=prompt or None,
                negative_prompt=None,
                count=number,
                seed=None if seed_value is None else seed_value + index * MAX_COUNT,
                width=None,
                height=None,
                steps=None,
                guidance=None,
                settings=page.settings,
            )
        except ProblemError as exc:  # a refused prompt, a model that cannot render: said next to the form
            page.session.rollback()
            errors["prompt" if "prompt" in exc.code else "count" if "quota" in exc.code else "style"] = (
                exc.detail
            )
            return form_again(exc.status)
        retraining = retraining or plan.retraining
        model_id = plan.model.id  # a retrained model serves the next styles too
        page.session.commit()
        enqueue(page, plan.to_enqueue)
    return page.redirect("/portraits?retraining=1" if retraining else "/portraits")


def _gallery_context(page: Page) -> dict[str, Any]:
    user = page.user
    renders = portraits_service.list_renders(page.session, owner_id=user.id)
    pets = {p.id: p for p in pets_service.list_pets(page.session, owner_id=user.id)}
    expired = []
    for pet in pets.values():
        training = training_of(page.session, pet=pet)
        if training.status == "expired":
            photos = pets_service.list_photos(page.session, owner_id=user.id, pet_id=pet.id)
            expired.append({"pet": pet, "training": training, "photos": photos})
    titles = {s.name: s.title for s in list_styles()}
    return {
        "renders": renders,
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
    render = portraits_service.get_render(page.session, owner_id=page.user.id, render_id=render_id)
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
    base_url = (page.settings.base_url or str(page.request.base_url)).rstrip("/")
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
