"""My data: everything held and when each item is deleted, deletion receipts, export, delete the account."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Response

from petportrait.accounts import service as accounts_service
from petportrait.clock import utcnow
from petportrait.errors import ProblemError
from petportrait.lifecycle import service as lifecycle_service
from petportrait.lifecycle.sweeper import interval
from petportrait.lifecycle.views import export_zip_response
from petportrait.paging import MAX_LIMIT, PageParams
from petportrait.pets import service as pets_service
from petportrait.portraits import service as portraits_service
from petportrait.ratelimit import client_address, limiter_of
from petportrait.retention import tombstones
from petportrait.web.deps import SESSION_COOKIE
from petportrait.web.pages.common import FormPage, Page, PageDep, PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)

KIND_LABELS = {"photo": "Photo", "model": "Model", "render": "Portrait", "marketing": "Marketing copy"}
KIND_COUNTS = {
    "photo": ("photo", "photos"),
    "model": ("model", "models"),
    "render": ("portrait", "portraits"),
    "marketing": ("copy in the marketing library", "copies in the marketing library"),
}
REASON_LABELS = {
    "expired": "its retention period ended",
    "owner_deleted": "you deleted it",
    "account_deleted": "you deleted your account",
    "staff_deleted": "deleted by staff",
}


def pets_and_items(page: Page) -> list[dict[str, Any]]:
    """Each of the person's pets with its live photos (oldest first), models and portraits."""
    owner_id = page.user.id
    return [
        {
            "pet": pet,
            "photos": sorted(
                pets_service.list_photos(page.session, owner_id=owner_id, pet_id=pet.id),
                key=lambda p: (p.uploaded_at, p.original_filename),
            ),
            "models": portraits_service.list_models(
                page.session, owner_id=owner_id, pet_id=pet.id, settings=page.settings
            ),
            "renders": portraits_service.list_renders(
                page.session, owner_id=owner_id, pet_id=pet.id, settings=page.settings
            ),
        }
        for pet in pets_service.list_pets(page.session, owner_id=owner_id)
    ]


def _data_context(page: Page) -> dict[str, Any]:
    user = page.user
    now = utcnow()
    pets = pets_and_items(page)
    sessions = [
        t
        for t in accounts_service.list_tokens(page.session, user=user)
        if t.revoked_at is None and t.expires_at > now
    ]
    return {
        "pets": pets,
        "receipts": tombstones.list_deletions(
            page.session, owner_id=user.id, page=PageParams(limit=MAX_LIMIT)
        )[0],
        "tokens": sessions,
        "kind_labels": KIND_LABELS,
        "reason_labels": REASON_LABELS,
        "sweep_seconds": interval(page.settings),
    }


@router.get("/me")
def my_data(page: PageDep) -> Response:
    """Everything held about the person, when each item will be deleted, and the deletion receipts."""
    return page.render("mydata.html", title="My data", confirm_error=None, **_data_context(page))


@router.post("/me/export")
def export_data(page: FormPage) -> Response:
    """Everything held about the person as one ZIP file."""
    user = page.user
    return page.finish(
        export_zip_response(page.session, page.services.blobs, user_id=user.id, settings=page.settings)
    )


@router.post("/me/delete")
def delete_account(
    page: FormPage,
    confirm_email: Annotated[str, Form(max_length=320)] = "",
    current_password: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    """Delete the account after the person typed their email and their current password to confirm."""
    user = page.user
    if confirm_email.strip().lower() != user.email:
        return page.render(
            "mydata.html",
            status=422,
            title="My data",
            confirm_error="To delete your account, type your email address exactly as shown.",
            **_data_context(page),
        )
    try:
        accounts_service.reauthenticate(
            user, current_password, limiter=limiter_of(page.request), address=client_address(page.request)
        )
    except ProblemError as exc:
        return page.render(
            "mydata.html",
            status=exc.status,
            title="My data",
            password_error=(
                "Type your current password to delete your account."
                if exc.code == "reauth_required"
                else exc.detail
            ),
            **_data_context(page),
        )
    summary = lifecycle_service.erase_account(page.session, user_id=user.id, actor_id=user.id)
    page.cookies.append((SESSION_COOKIE, "", 0))
    page.principal = None
    return page.render(
        "deleted.html",
        title="Your account is deleted",
        summary=summary,
        within=interval(page.settings),
        kind_counts=KIND_COUNTS,
    )
