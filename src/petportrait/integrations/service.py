"""Webhooks: a person's endpoints, events written as deliveries in the event's transaction, and a periodic
deliverer that signs them per Standard Webhooks (the `standardwebhooks` package) and retries with backoff.

A delivery's id is its `webhook-id`, the same on every attempt, so a receiver de-duplicates retries.
Against server-side request forgery: https only in production; at every attempt the host is resolved and
every address checked (no loopback, private, link-local, shared, multicast, reserved or metadata address)
unless webhooks.allow_private_targets; the request then goes to the checked address (the name is kept for
Host and TLS), redirects are not followed, an attempt has a total deadline and at most a few KB of the
answer are read.

Receivers are called from a small thread pool of the deliverers' own, never while a database transaction is
open: a slow receiver holds one pool thread for at most the deadline, and nothing else waits for it.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook

from petportrait.accounts import service as accounts_service
from petportrait.clock import utcnow
from petportrait.db import new_id
from petportrait.errors import InvalidInput, NotFound
from petportrait.integrations.models import DeliveryState, WebhookDelivery, WebhookEndpoint, secret_key_name
from petportrait.paging import PageParams, page_query
from petportrait.registry import Event, Services, emit
from petportrait.retention.keys import destroy_keys, open_sealed, seal_with_new_key, settings_keks
from petportrait.settings import Settings

if TYPE_CHECKING:  # a worker loads no web layer (ratelimit imports FastAPI)
    from petportrait.ratelimit import RateLimiter

log = logging.getLogger(__name__)

EVENTS = (
    "model.ready",
    "model.failed",
    "render.ready",
    "render.failed",
    "item.deleted",
    "consent.requested",
    "notice.sent",
)
TEST_EVENT = "webhook.test"
MAX_ENDPOINTS = 10
_IN_CHUNK = 500
# after the first try: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (27.6 hours in all), then failed
RETRY_DELAYS = (5, 300, 1800, 7200, 18000, 36000, 36000)
REASONS = {"account_deleted": "erased", "erased": "erased"}
TEST_WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:test"
METADATA_ADDRESSES = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


class TargetRefused(Exception):
    """The endpoint's address may not be called; the message says why."""


# ---- endpoints -----------------------------------------------------------------------------------------


def _check_url(url: str, settings: Settings) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidInput("The URL must be an absolute https:// URL.", code="invalid_webhook_url")
    if parts.scheme != "https" and settings.environment == "production":
        raise InvalidInput("Webhook URLs must use https.", code="webhook_https_required")
    if parts.username or parts.password:
        raise InvalidInput("The URL may not carry a user name or password.", code="invalid_webhook_url")
    if len(url) > 2048:
        raise InvalidInput("The URL is longer than 2048 characters.", code="invalid_webhook_url")
    return url


def new_secret() -> str:
    """A Standard Webhooks secret: whsec_ and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@dataclass(frozen=True)
class CreatedEndpoint:
    """A new endpoint and its secret in the clear: shown once, at creation, and never again."""

    endpoint: WebhookEndpoint
    secret: str


def create_endpoint(
    session: Session, *, owner_id: str, url: str, events: list[str], settings: Settings
) -> CreatedEndpoint:
    """A new endpoint for these events; its secret is returned once, with it, and stored only sealed."""
    url = _check_url(url, settings)
    unknown = sorted(set(events) - set(EVENTS))
    if unknown or not events:
        raise InvalidInput(
            f"events must be some of: {', '.join(EVENTS)}.", code="invalid_webhook_events", unknown=unknown
        )
    count = len(list(session.scalars(select(WebhookEndpoint.id).where(WebhookEndpoint.owner_id == owner_id))))
    if count >= MAX_ENDPOINTS:
        raise InvalidInput(f"At most {MAX_ENDPOINTS} endpoints per account.", code="too_many_webhooks")
    if not settings.webhooks.allow_private_targets:
        host = urlsplit(url).hostname or ""
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None and _forbidden(literal):
            raise InvalidInput(
                "That address is private, loopback, link-local or otherwise internal; webhooks go to the "
                "public internet.",
                code="webhook_target_forbidden",
            )
    secret = new_secret()
    endpoint = WebhookEndpoint(
        id=new_id(),
        owner_id=owner_id,
        url=url,
        events=list(dict.fromkeys(events)),
        created_at=utcnow(),
    )
    endpoint.sealed_secret = seal_with_new_key(
        session, settings_keks(settings), secret_key_name(owner_id, endpoint.id), secret.encode()
    )
    session.add(endpoint)
    session.flush()
    _cache(session).pop(owner_id, None)
    return CreatedEndpoint(endpoint, secret)


def endpoint_secret(session: Session, endpoint: WebhookEndpoint, *, settings: Settings) -> str | None:
    """The endpoint's signing secret, opened to sign a delivery; None once its data key is destroyed."""
    name = secret_key_name(endpoint.owner_id, endpoint.id)
    opened = open_sealed(session, settings_keks(settings), name, endpoint.sealed_secret)
    return None if opened is None else opened.decode()


def list_endpoints(session: Session, *, owner_id: str) -> list[WebhookEndpoint]:
    """The person's endpoints, oldest first."""
    return list(
        session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.owner_id == owner_id)
            .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        )
    )


def get_endpoint(session: Session, *, owner_id: str, endpoint_id: str) -> WebhookEndpoint:
    """One of the person's endpoints; another person's is not found."""
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.owner_id != owner_id:
        raise NotFound("No such webhook endpoint.", code="webhook_not_found")
    return endpoint


def delete_endpoint(session: Session, *, owner_id: str, endpoint_id: str) -> None:
    """Delete an endpoint and its deliveries (nothing more is sent to it)."""
    endpoint = get_endpoint(session, owner_id=owner_id, endpoint_id=endpoint_id)
    destroy_keys(session, [secret_key_name(owner_id, endpoint.id)])  # the sealed secret is gone for good
    session.delete(endpoint)
    session.flush()
    _cache(session).pop(owner_id, None)


def deliveries(
    session: Session, *, owner_id: str, endpoint_id: str, limit: int = 50
) -> list[WebhookDelivery]:
    """The recent deliveries of an endpoint, newest first."""
    return page_deliveries(session, owner_id=owner_id, endpoint_id=endpoint_id, page=PageParams(limit=limit))[
        0
    ]


def page_deliveries(
    session: Session, *, owner_id: str, endpoint_id: str, page: PageParams
) -> tuple[list[WebhookDelivery], str | None]:
    """One page of an endpoint's deliveries, newest first."""
    get_endpoint(session, owner_id=owner_id, endpoint_id=endpoint_id)
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    return page_query(session, query, stamp=WebhookDelivery.created_at, ident=WebhookDelivery.id, page=page)


def page_endpoints(
    session: Session, *, owner_id: str, page: PageParams
) -> tuple[list[WebhookEndpoint], str | None]:
    """One page of the person's endpoints, oldest first."""
    query = select(WebhookEndpoint).where(WebhookEndpoint.owner_id == owner_id)
    return page_query(
        session,
        query,
        stamp=WebhookEndpoint.created_at,
        ident=WebhookEndpoint.id,
        page=page,
        descending=False,
    )


# ---- events -> deliveries ------------------------------------------------------------------------------


def _cache(session: Session) -> dict[str, list[tuple[str, list[str]]]]:
    cache: dict[str, list[tuple[str, list[str]]]] = session.info.setdefault("webhooks.endpoints", {})
    return cache


def _load_endpoints(session: Session, owner_ids: Iterable[str]) -> None:
    """Cache (id, events) of the active endpoints of each owner not cached yet, a chunk of owners a query."""
    cache = _cache(session)
    wanted = sorted({owner for owner in owner_ids if owner not in cache})
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start : start + _IN_CHUNK]
        found: dict[str, list[tuple[str, list[str]]]] = {owner: [] for owner in chunk}
        for endpoint_id, owner, events in session.execute(
            select(WebhookEndpoint.id, WebhookEndpoint.owner_id, WebhookEndpoint.events)
            .where(WebhookEndpoint.owner_id.in_(chunk), WebhookEndpoint.disabled_at.is_(None))
            .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        ):
            found[owner].append((endpoint_id, list(events)))
        cache.update(found)


def _endpoints_for(session: Session, owner_id: str) -> list[tuple[str, list[str]]]:
    """(id, events) of the owner's active endpoints; cached for the session (a sweep emits many events)."""
    cache = _cache(session)
    if owner_id not in cache:
        _load_endpoints(session, [owner_id])
    return cache[owner_id]


def payload_of(event: Event) -> dict[str, Any]:
    """The event's data: ids, and links relative to the base URL (never image bytes)."""
    d = dict(event.data)
    links: dict[str, str] = {}
    if event.name.startswith("model."):
        links = {"model": f"/api/v1/models/{d.get('model_id')}", "pet": f"/api/v1/pets/{d.get('pet_id')}"}
    elif event.name.startswith("render."):
        links = {
            "render": f"/api/v1/renders/{d.get('render_id')}",
            "model": f"/api/v1/models/{d.get('model_id')}",
        }
        if event.name == "render.ready":
            links["content"] = f"/api/v1/renders/{d.get('render_id')}/content"
    elif event.name == "item.deleted":
        d["reason"] = REASONS.get(str(d.get("reason")), str(d.get("reason")))
        links = {"deletions": "/api/v1/me/deletions"}
    elif event.name == "consent.requested":
        links = {"requests": "/api/v1/me/consent-requests"}
    elif event.name == "notice.sent":
        links = {"notices": "/api/v1/me/notices", "notice": f"/api/v1/me/notices/{d.get('notice_id')}"}
    data = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in d.items()}
    return {"type": event.name, "data": {**data, "links": links}}


def on_event(session: Session, event: Event) -> None:
    """Subscriber: one pending delivery per active endpoint of the owner that wants this event."""
    if _add_deliveries(session, event):
        session.flush()


def on_events(session: Session, events: Sequence[Event]) -> None:
    """Batch subscriber (`emit_many`): what on_event does for each event, reading the owners' endpoints
    at once."""
    _load_endpoints(session, (event.owner_id for event in events if event.owner_id is not None))
    added = [_add_deliveries(session, event) for event in events]
    if any(added):
        session.flush()


def _add_deliveries(session: Session, event: Event) -> bool:
    """Add the event's pending deliveries to the session; False if no endpoint wants it."""
    if event.owner_id is None:
        return False
    targets = [eid for eid, wanted in _endpoints_for(session, event.owner_id) if event.name in wanted]
    if not targets:
        return False
    now = utcnow()
    body = payload_of(event)
    for endpoint_id in targets:
        session.add(
            WebhookDelivery(
                endpoint_id=endpoint_id,
                owner_id=event.owner_id,
                event=event.name,
                payload={**body, "timestamp": now.isoformat()},
                state=DeliveryState.PENDING.value,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
    return True


def on_account_erased(session: Session, event: Event) -> None:
    """An erased account's endpoints keep receiving only item.deleted, so its integration can delete its
    copies on the same clock; the sweep removes them two days later."""
    if event.owner_id is None:
        return
    for endpoint in session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.owner_id == event.owner_id)
    ):
        endpoint.events = [e for e in endpoint.events if e == "item.deleted"]
    _cache(session).pop(event.owner_id, None)
    session.flush()


def create_test(session: Session, *, owner_id: str, endpoint_id: str) -> WebhookDelivery:
    """A `webhook.test` delivery to an endpoint, due now."""
    endpoint = get_endpoint(session, owner_id=owner_id, endpoint_id=endpoint_id)
    now = utcnow()
    delivery = WebhookDelivery(
        endpoint_id=endpoint.id,
        owner_id=owner_id,
        event=TEST_EVENT,
        payload={"type": TEST_EVENT, "timestamp": now.isoformat(), "data": {"endpoint_id": endpoint.id}},
        state=DeliveryState.PENDING.value,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(delivery)
    session.flush()
    return delivery


def request_test(
    session: Session, services: Services, *, owner_id: str, endpoint_id: str, limiter: RateLimiter
) -> WebhookDelivery:
    """The test button: a rate-limited `webhook.test` delivery, committed and handed to the deliverers'
    pool; returns at once (the receiver is called after this answer, outside this transaction)."""
    get_endpoint(session, owner_id=owner_id, endpoint_id=endpoint_id)
    limiter.take(
        ("webhook_tests_per_account", owner_id),
        detail="Too many test events for this account.",
        code="too_many_webhook_tests",
    )
    delivery = create_test(session, owner_id=owner_id, endpoint_id=endpoint_id)
    session.commit()
    deliver_soon(services.session_factory, services.settings, delivery.id, worker_id=TEST_WORKER_ID)
    return delivery


# ---- where a delivery may go -----------------------------------------------------------------------------


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _forbidden(address.ipv4_mapped)
    return bool(
        address in METADATA_ADDRESSES
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv4Address) and address in ipaddress.ip_network("100.64.0.0/10"))
        or not address.is_global
    )


def resolve_target(url: str, *, settings: Settings) -> tuple[str, int, list[str]]:
    """(host, port, addresses) the URL may be delivered to; TargetRefused when it may not."""
    parts = urlsplit(url)
    if parts.scheme != "https" and (parts.scheme != "http" or settings.environment == "production"):
        raise TargetRefused("only https targets are allowed")
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TargetRefused(f"the host {host!r} does not resolve ({exc.strerror})") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not settings.webhooks.allow_private_targets:
        bad = [a for a in addresses if _forbidden(ipaddress.ip_address(a.split("%")[0]))]
        if bad:
            raise TargetRefused(f"the host {host!r} resolves to a non-public address ({', '.join(bad)})")
    if not addresses:
        raise TargetRefused(f"the host {host!r} has no address")
    return host, port, addresses


@dataclass
class Attempt:
    status: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class Outgoing:
    """What one attempt sends, read from the database before the call so that no session is open during it."""

    delivery_id: str
    url: str
    secret: str
    payload: dict[str, Any]


def send(outgoing: Outgoing, *, settings: Settings) -> Attempt:
    """One signed POST to the checked address of the endpoint, within webhooks.attempt_deadline_seconds in all
    (connect, headers and body together: a receiver that drips bytes is cut off at the deadline); reads at
    most max_response_bytes of the answer."""
    cfg = settings.webhooks
    try:
        host, port, addresses = resolve_target(outgoing.url, settings=settings)
    except TargetRefused as exc:
        return Attempt(None, f"refused: {exc}")
    parts = urlsplit(outgoing.url)
    address = addresses[0]
    netloc_ip = f"[{address}]" if ":" in address else address
    target = urlunsplit((parts.scheme, f"{netloc_ip}:{port}", parts.path or "/", parts.query, ""))
    payload = dict(outgoing.payload)
    base = settings.public_base_url
    data = dict(payload.get("data") or {})
    if isinstance(data.get("links"), dict):
        data["links"] = {k: base + v for k, v in data["links"].items()}
    payload["data"] = data
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    now = datetime.now(UTC)  # the wall clock: receivers check the timestamp against theirs
    signature = Webhook(outgoing.secret).sign(outgoing.delivery_id, now, body)
    host_header = host if parts.port is None else f"{host}:{parts.port}"
    headers = {
        "content-type": "application/json",
        "user-agent": "petportrait-webhooks",
        "host": host_header,
        "webhook-id": outgoing.delivery_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}

    async def post() -> int:
        with anyio.fail_after(cfg.attempt_deadline_seconds):
            async with (
                httpx.AsyncClient(
                    follow_redirects=False, timeout=cfg.timeout_seconds, trust_env=False
                ) as client,
                client.stream(
                    "POST", target, content=body.encode(), headers=headers, extensions=extensions
                ) as response,
            ):
                read = 0
                async for chunk in response.aiter_bytes():
                    read += len(chunk)
                    if read >= cfg.max_response_bytes:
                        break
                return response.status_code

    try:
        status = anyio.run(post)
    except TimeoutError:
        return Attempt(None, f"the receiver did not answer within {cfg.attempt_deadline_seconds:g} s in all")
    except httpx.HTTPError as exc:
        return Attempt(None, f"{type(exc).__name__}: {exc}"[:500])
    if 200 <= status < 300:
        return Attempt(status, None)
    if 300 <= status < 400:
        return Attempt(status, "redirects are not followed")
    return Attempt(status, f"the receiver answered {status}")


# ---- delivering ------------------------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    delivered: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)


def _due_clause(now: datetime) -> Any:
    return or_(
        and_(WebhookDelivery.state == DeliveryState.PENDING.value, WebhookDelivery.next_attempt_at <= now),
        and_(WebhookDelivery.state == DeliveryState.SENDING.value, WebhookDelivery.claimed_until < now),
    )


def record(
    session: Session,
    delivery: WebhookDelivery,
    endpoint: WebhookEndpoint,
    result: Attempt,
    *,
    settings: Settings,
    report: DeliveryReport,
) -> None:
    """Write an attempt's outcome; on failure schedule the next try, or give up; disable an endpoint that
    failed for webhooks.disable_after_days (its owner is emailed through the webhook.disabled event)."""
    now = utcnow()
    delivery.last_status = result.status
    delivery.last_error = result.error
    delivery.claimed_by = None
    delivery.claimed_until = None
    if result.ok:
        delivery.state = DeliveryState.DELIVERED.value
        delivery.delivered_at = now
        endpoint.failing_since = None
        report.delivered.append(delivery.id)
        session.flush()
        return
    if delivery.attempts > len(RETRY_DELAYS) or delivery.event == TEST_EVENT:
        delivery.state = DeliveryState.FAILED.value
        report.failed.append(delivery.id)
    else:
        delivery.state = DeliveryState.PENDING.value
        delivery.next_attempt_at = now + timedelta(seconds=RETRY_DELAYS[delivery.attempts - 1])
        report.retried.append(delivery.id)
    if delivery.event != TEST_EVENT:
        endpoint.failing_since = endpoint.failing_since or now
        days = settings.webhooks.disable_after_days
        if endpoint.disabled_at is None and now - endpoint.failing_since >= timedelta(days=days):
            endpoint.disabled_at = now
            endpoint.disabled_reason = f"every delivery failed for {days:g} days"
            session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.endpoint_id == endpoint.id,
                    WebhookDelivery.state == DeliveryState.PENDING.value,
                )
                .values(state=DeliveryState.FAILED.value, last_error="the endpoint was disabled")
                .execution_options(synchronize_session=False)
            )
            report.disabled.append(endpoint.id)
            emit(
                session,
                "webhook.disabled",
                owner_id=endpoint.owner_id,
                endpoint_id=endpoint.id,
                url=endpoint.url,
                days=days,
            )
    session.flush()


def _claim(
    session_factory: sessionmaker[Session],
    settings: Settings,
    delivery_id: str,
    *,
    worker_id: str,
    now: datetime,
) -> Outgoing | None:
    """Claim a due delivery and read what to send, in a short transaction of its own; None when another
    deliverer has it, it is not due, or its endpoint is gone or disabled (then it is marked failed)."""
    ttl = timedelta(seconds=settings.webhooks.claim_seconds)
    with session_factory() as session:
        claimed = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, _due_clause(now))
            .values(
                state=DeliveryState.SENDING.value,
                claimed_by=worker_id,
                claimed_until=now + ttl,
                attempts=WebhookDelivery.attempts + 1,
            )
            .execution_options(synchronize_session=False)
        )
        session.commit()
        if not claimed.rowcount:  # type: ignore[attr-defined]
            return None
        delivery = session.get(WebhookDelivery, delivery_id, populate_existing=True)
        endpoint = session.get(WebhookEndpoint, delivery.endpoint_id) if delivery else None
        if delivery is None or endpoint is None:
            return None
        if endpoint.disabled_at is not None:
            delivery.state = DeliveryState.FAILED.value
            delivery.last_error = "the endpoint is disabled"
            session.commit()
            return None
        secret = endpoint_secret(session, endpoint, settings=settings)
        if secret is None:  # its data key was destroyed (the endpoint is going): nothing can be signed
            delivery.state = DeliveryState.FAILED.value
            delivery.last_error = "the endpoint's signing secret is destroyed"
            session.commit()
            return None
        outgoing = Outgoing(delivery.id, endpoint.url, secret, dict(delivery.payload))
        session.rollback()  # end the read transaction before the call
        return outgoing


def deliver_one(
    session_factory: sessionmaker[Session],
    settings: Settings,
    delivery_id: str,
    *,
    worker_id: str,
    now: datetime | None = None,
    report: DeliveryReport | None = None,
) -> DeliveryReport:
    """Claim one delivery, call the receiver with no database transaction open, then record the outcome."""
    report = report if report is not None else DeliveryReport()
    outgoing = _claim(session_factory, settings, delivery_id, worker_id=worker_id, now=now or utcnow())
    if outgoing is None:
        return report
    result = send(outgoing, settings=settings)
    with session_factory() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        endpoint = session.get(WebhookEndpoint, delivery.endpoint_id) if delivery else None
        if delivery is None or endpoint is None or delivery.claimed_by != worker_id:
            return report  # deleted meanwhile, or the claim expired and another deliverer took it
        record(session, delivery, endpoint, result, settings=settings, report=report)
        session.commit()
    return report


_pool_lock = threading.Lock()
_pools: dict[int, ThreadPoolExecutor] = {}


def _pool(settings: Settings) -> ThreadPoolExecutor:
    """The deliverers' own small thread pool (webhooks.concurrency threads): receivers wait here, never in a
    periodic thread or a request."""
    size = settings.webhooks.concurrency
    with _pool_lock:
        pool = _pools.get(size)
        if pool is None:
            pool = _pools[size] = ThreadPoolExecutor(max_workers=size, thread_name_prefix="webhooks")
        return pool


def deliver_soon(
    session_factory: sessionmaker[Session], settings: Settings, delivery_id: str, *, worker_id: str
) -> None:
    """Hand one delivery to the pool and return at once (the test button); its outcome is recorded on it."""

    def run() -> None:
        try:
            deliver_one(session_factory, settings, delivery_id, worker_id=worker_id)
        except Exception:
            log.exception("webhook delivery %s failed", delivery_id)

    _pool(settings).submit(run)


def deliver_due(
    session_factory: sessionmaker[Session], settings: Settings, *, worker_id: str, now: datetime | None = None
) -> DeliveryReport:
    """Claim, send and record the deliveries that are due, webhooks.concurrency at a time; each attempt ends
    within webhooks.attempt_deadline_seconds."""
    report = DeliveryReport()
    now = now or utcnow()
    with session_factory() as session:
        ids = list(
            session.scalars(
                select(WebhookDelivery.id)
                .where(_due_clause(now))
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(settings.webhooks.batch)
            )
        )
    pool = _pool(settings)
    futures = [
        pool.submit(deliver_one, session_factory, settings, i, worker_id=worker_id, now=now, report=report)
        for i in ids
    ]
    for future in futures:
        try:
            future.result()
        except Exception:
            log.exception("a webhook delivery failed")
    if report.delivered or report.retried or report.failed:
        log.info(
            "webhooks: delivered %d, retrying %d, failed %d, endpoints disabled %d",
            len(report.delivered),
            len(report.retried),
            len(report.failed),
            len(report.disabled),
        )
    return report


def sweep(session: Session, *, now: datetime | None = None) -> int:
    """Delete deliveries older than 30 days and the endpoints of accounts erased more than 2 days ago."""
    from sqlalchemy import delete

    now = now or utcnow()
    result = session.execute(
        delete(WebhookDelivery)
        .where(
            WebhookDelivery.created_at < now - timedelta(days=30),
            WebhookDelivery.state.in_([DeliveryState.DELIVERED.value, DeliveryState.FAILED.value]),
        )
        .execution_options(synchronize_session=False)
    )
    erased = accounts_service.erased_owners(before=now - timedelta(days=2))
    ended = session.execute(
        select(WebhookEndpoint.owner_id, WebhookEndpoint.id).where(WebhookEndpoint.owner_id.in_(erased))
    ).all()
    destroy_keys(session, [secret_key_name(owner, endpoint_id) for owner, endpoint_id in ended])
    session.execute(
        delete(WebhookEndpoint)
        .where(WebhookEndpoint.owner_id.in_(erased))
        .execution_options(synchronize_session=False)
    )
    session.flush()
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def export_section(session: Session, user_id: str) -> list[dict[str, Any]]:
    """The person's endpoints in their data export (without secrets)."""
    return [
        {
            "id": e.id,
            "url": e.url,
            "events": e.events,
            "created_at": e.created_at.isoformat(),
            "disabled_at": e.disabled_at.isoformat() if e.disabled_at else None,
        }
        for e in list_endpoints(session, owner_id=user_id)
    ]


def endpoint_counts(session: Session) -> dict[str, int]:
    """How many webhook endpoints are active, failing (still retried) and disabled (for the metrics)."""
    disabled = WebhookEndpoint.disabled_at.is_not(None)
    failing = WebhookEndpoint.failing_since.is_not(None) & WebhookEndpoint.disabled_at.is_(None)
    total = int(session.scalar(select(func.count()).select_from(WebhookEndpoint)) or 0)
    off = int(session.scalar(select(func.count()).select_from(WebhookEndpoint).where(disabled)) or 0)
    bad = int(session.scalar(select(func.count()).select_from(WebhookEndpoint).where(failing)) or 0)
    return {"active": total - off - bad, "failing": bad, "disabled": off}
