"""Settings: email preferences (time zone, job messages, reminders) and webhook endpoints."""

from __future__ import annotations

import zoneinfo
from typing import Annotated, Any

from fastapi import APIRouter, Form, Response

from petportrait.errors import InvalidInput, ProblemError
from petportrait.integrations import service as webhooks
from petportrait.notifications import service as notifications
from petportrait.ratelimit import limiter_of
from petportrait.web.pages.common import FormPage, Page, PageDep, PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)

EVENT_LABELS = {
    "model.ready": "A pet's model is ready",
    "model.failed": "A pet's model could not be trained",
    "render.ready": "A portrait is ready",
    "render.failed": "A portrait could not be made",
    "item.deleted": "A photo, model or portrait was deleted",
    "consent.requested": "We ask to use an image in marketing",
    "notice.sent": "A content-policy notice was sent to you",
    "webhook.test": "Test event",
}
DELIVERY_STATES = {
    "pending": "waiting to be sent",
    "sending": "being sent",
    "delivered": "delivered",
    "failed": "failed, not retried",
}
TIME_ZONES = sorted(zoneinfo.available_timezones() - {"localtime", "Factory"})


def _context(page: Page, **extra: Any) -> dict[str, Any]:
    endpoints = webhooks.list_endpoints(page.session, owner_id=page.user.id)
    return {
        "prefs": notifications.preferences(page.session, user_id=page.user.id),
        "endpoints": [
            {
                "endpoint": e,
                "deliveries": webhooks.deliveries(
                    page.session, owner_id=page.user.id, endpoint_id=e.id, limit=10
                ),
            }
            for e in endpoints
        ],
        "events": webhooks.EVENTS,
        "event_labels": EVENT_LABELS,
        "delivery_states": DELIVERY_STATES,
        "time_zones": TIME_ZONES,
        "secret": None,
        "form_error": None,
        "hook_errors": {},
        "hook_form": {"url": "", "events": list(webhooks.EVENTS)},
        **extra,
    }


@router.get("/settings")
def settings_page(page: PageDep) -> Response:
    """Email preferences and webhook endpoints."""
    return page.render("settings.html", title="Settings", **_context(page))


@router.post("/settings/email")
def save_email(
    page: FormPage,
    timezone: Annotated[str, Form(max_length=64)] = "UTC",
    job_messages: Annotated[str | None, Form()] = None,
    reminders: Annotated[str | None, Form()] = None,
) -> Response:
    """Save the email preferences."""
    try:
        notifications.set_preferences(
            page.session,
            user_id=page.user.id,
            timezone=timezone.strip() or "UTC",
            job_messages=job_messages is not None,
            reminders=reminders is not None,
        )
    except InvalidInput as exc:
        return page.render(
            "settings.html", status=422, title="Settings", **_context(page, form_error=exc.detail)
        )
    return page.redirect("/settings?saved=1")


@router.post("/settings/webhooks")
def add_webhook(
    page: FormPage,
    url: Annotated[str, Form(max_length=2048)] = "",
    events: Annotated[list[str] | None, Form(max_length=20)] = None,
) -> Response:
    """Add an endpoint; its secret is shown on this answer only."""
    try:
        created = webhooks.create_endpoint(
            page.session, owner_id=page.user.id, url=url, events=events or [], settings=page.settings
        )
    except ProblemError as exc:
        field = "events" if exc.code == "invalid_webhook_events" else "url"
        if field == "events" and not events:
            detail = "Choose at least one event to be told about."
        elif field == "events":
            detail = "Choose among the events listed."
        else:
            detail = exc.detail
        return page.render(
            "settings.html",
            status=422,
            title="Settings",
            **_context(page, hook_errors={field: detail}, hook_form={"url": url, "events": events or []}),
        )
    return page.render("settings.html", title="Settings", **_context(page, secret=created.secret))


@router.post("/settings/webhooks/{endpoint_id}/test")
def test_webhook(endpoint_id: str, page: FormPage) -> Response:
    """Send a signed test event now."""
    webhooks.request_test(
        page.session,
        page.services,
        owner_id=page.user.id,
        endpoint_id=endpoint_id,
        limiter=limiter_of(page.request),
    )
    return page.redirect("/settings?tested=1")


@router.post("/settings/webhooks/{endpoint_id}/delete")
def delete_webhook(endpoint_id: str, page: FormPage) -> Response:
    """Delete an endpoint."""
    webhooks.delete_endpoint(page.session, owner_id=page.user.id, endpoint_id=endpoint_id)
    return page.redirect("/settings?deleted=1")
