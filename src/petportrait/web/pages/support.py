"""Support: a person opens a case naming their own items, which support staff may then view until it ends."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Response

from petportrait.consent import support
from petportrait.errors import InvalidInput, NotFound
from petportrait.web.pages.common import FormPage, Page, PageDep, PageRoute, fmt_date
from petportrait.web.pages.data import pets_and_items

router = APIRouter(route_class=PageRoute, include_in_schema=False)

KIND_LABELS = {"photo": "photo", "model": "model", "render": "portrait"}


def _support_context(page: Page, *, form: dict[str, Any] | None = None) -> dict[str, Any]:
    """The items the person may name, grouped by pet, and their cases, newest first."""
    owner_id = page.user.id
    pets = []
    labels: dict[str, str] = {}
    for held in pets_and_items(page):
        pet = held["pet"]
        items = [("photo", photo.id, f"Photo {photo.original_filename}") for photo in held["photos"]]
        for model in held["models"]:
            items.append(
                (
                    "model",
                    model.id,
                    f"Model of {fmt_date(model.trained_at or model.created_at)}, {model.state}",
                )
            )
        for render in held["renders"]:
            style = f" ({render.style.replace('_', ' ')})" if render.style else ""
            items.append(("render", render.id, f"Portrait{style}, {render.state}"))
        for kind, item_id, label in items:
            labels[f"{kind}:{item_id}"] = f"{label} of {pet.name}"
        if items:
            pets.append({"pet": pet, "items": [{"value": f"{k}:{i}", "label": t} for k, i, t in items]})
    cases = [
        {
            "case": case,
            "open": support.is_open(case),
            "items": [_case_item_label(labels, item) for item in case.items],
        }
        for case in support.cases_of(page.session, owner_id=owner_id)
    ]
    max_days = page.settings.rights.support_case_max_days
    return {
        "pets": pets,
        "cases": cases,
        "max_days": max_days,
        "day_choices": [d for d in (1, 2, 3, 5, 7) if d <= max_days] or [max_days],
        "form": form or {"subject": "", "items": [], "days": None},
        "form_error": None,
    }


def _case_item_label(labels: dict[str, str], item: dict[str, str]) -> str:
    kind = item["kind"]
    return labels.get(f"{kind}:{item['id']}", f"A {KIND_LABELS.get(kind, kind)}, since deleted")


@router.get("/support")
def support_page(page: PageDep) -> Response:
    """Open a support case naming items; the person's cases, with a button to close each open one."""
    return page.render("support.html", title="Support", **_support_context(page))


@router.post("/support/cases")
def open_case(
    page: FormPage,
    subject: Annotated[str, Form(max_length=2000)] = "",
    items: Annotated[list[str] | None, Form(max_length=50)] = None,
    days: Annotated[float, Form(gt=0)] = 7,
) -> Response:
    """Open a case: support may view the ticked items until it ends or the person closes it."""
    chosen = list(dict.fromkeys(items or []))
    refs = [(kind, item_id) for kind, _, item_id in (value.partition(":") for value in chosen)]
    problem = None
    if not subject.strip():
        problem = "Say what you need help with, so support knows what to look for."
    elif not refs:
        problem = "Tick at least one photo, model or portrait that support may look at."
    else:
        try:
            support.open_case(
                page.session,
                owner_id=page.user.id,
                subject=subject,
                items=refs,
                days=days,
                settings=page.settings,
            )
        except NotFound:
            problem = "One of the ticked items is gone or is not yours; reload the page and tick again."
        except InvalidInput as exc:
            problem = exc.detail
    if problem is None:
        return page.redirect("/support?opened=1")
    context = _support_context(page, form={"subject": subject, "items": chosen, "days": days})
    context["form_error"] = problem
    return page.render("support.html", status=422, title="Support", **context)


@router.post("/support/cases/{case_id}/close")
def close_case(case_id: str, page: FormPage) -> Response:
    """Close a case: support's access to its items ends now."""
    support.close_case(page.session, owner_id=page.user.id, case_id=case_id)
    return page.redirect("/support?closed=1")
