"""Webhooks API: create (the secret is shown once), list, delete, test, and an endpoint's deliveries."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from petportrait.accounts.deps import CurrentUser
from petportrait.http import PageQuery, ServicesDep, SessionDep, SettingsDep
from petportrait.integrations import service
from petportrait.integrations.models import WebhookDelivery, WebhookEndpoint
from petportrait.integrations.schemas import DeliveryOut, EndpointCreate, EndpointCreated, EndpointOut
from petportrait.paging import Page
from petportrait.ratelimit import LimiterDep

router = APIRouter(tags=["webhooks"])


def endpoint_out(endpoint: WebhookEndpoint) -> EndpointOut:
    return EndpointOut(
        id=endpoint.id,
        url=endpoint.url,
        events=list(endpoint.events),
        created_at=endpoint.created_at,
        disabled_at=endpoint.disabled_at,
        disabled_reason=endpoint.disabled_reason,
    )


def delivery_out(d: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=d.id,
        event=d.event,
        state=d.state,
        attempts=d.attempts,
        last_status=d.last_status,
        last_error=d.last_error,
        created_at=d.created_at,
        next_attempt_at=d.next_attempt_at,
        delivered_at=d.delivered_at,
        payload=d.payload,
    )


@router.post("/webhooks", status_code=status.HTTP_201_CREATED, response_model=EndpointCreated)
def create(
    body: EndpointCreate, response: Response, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> EndpointCreated:
    """Add an endpoint; the answer carries its signing secret, which is not shown again (nor kept)."""
    response.headers["Cache-Control"] = "no-store"
    created = service.create_endpoint(
        session, owner_id=user.id, url=body.url, events=body.events, settings=settings
    )
    return EndpointCreated(**endpoint_out(created.endpoint).model_dump(), secret=created.secret)


@router.get("/webhooks", response_model=Page[EndpointOut])
def list_all(user: CurrentUser, session: SessionDep, page: PageQuery) -> Page[EndpointOut]:
    """The person's endpoints (without secrets), oldest first, paged."""
    rows, cursor = service.page_endpoints(session, owner_id=user.id, page=page)
    return Page(items=[endpoint_out(e) for e in rows], next_cursor=cursor)


@router.delete("/webhooks/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete(endpoint_id: str, user: CurrentUser, session: SessionDep) -> Response:
    """Delete an endpoint and its deliveries."""
    service.delete_endpoint(session, owner_id=user.id, endpoint_id=endpoint_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/webhooks/{endpoint_id}/test", status_code=status.HTTP_202_ACCEPTED, response_model=DeliveryOut)
def test(
    endpoint_id: str,
    user: CurrentUser,
    session: SessionDep,
    services: ServicesDep,
    limiter: LimiterDep,
    response: Response,
) -> DeliveryOut:
    """Send a signed `webhook.test` event: answers at once with the delivery, whose outcome shows in the
    endpoint's deliveries (the Location header) within a few seconds."""
    delivery = service.request_test(
        session, services, owner_id=user.id, endpoint_id=endpoint_id, limiter=limiter
    )
    response.headers["Location"] = f"/api/v1/webhooks/{endpoint_id}/deliveries"
    return delivery_out(delivery)


@router.get("/webhooks/{endpoint_id}/deliveries", response_model=Page[DeliveryOut])
def list_deliveries(
    endpoint_id: str, user: CurrentUser, session: SessionDep, page: PageQuery
) -> Page[DeliveryOut]:
    """The endpoint's recent deliveries, newest first, with their status codes (paged)."""
    rows, cursor = service.page_deliveries(session, owner_id=user.id, endpoint_id=endpoint_id, page=page)
    return Page(items=[delivery_out(d) for d in rows], next_cursor=cursor)
