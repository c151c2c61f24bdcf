"""Prometheus metrics of the data lifecycle, served at /metrics.

Read from the database on each scrape (so every replica tells the same story):
- petportrait_retention_items{kind,state}: state live, due (expired or of a deleted account, awaiting the
  sweeper), held (due but under a legal hold), deleted (tombstones);
- petportrait_retention_oldest_overdue_seconds{kind}: how long ago the oldest due, unheld item fell due
  (0 when none; alert when it exceeds the sweep interval);
- petportrait_legal_holds_active;
- petportrait_sweep_last_duration_seconds, petportrait_sweep_last_run_timestamp_seconds,
  petportrait_sweep_last_purged_items: the newest recorded sweep, by whichever process ran it.
- petportrait_jobs_oldest_queued_seconds{kind}: how long the oldest claimable queued job has waited;
- petportrait_outbox_messages{state}: email outbox messages by state (failed: retries ran out);
- petportrait_webhook_endpoints{state}: active, failing and disabled webhook endpoints.
Kept by this process: petportrait_sweep_duration_seconds (histogram) and
petportrait_sweep_purged_items_total{kind} for the sweeps it ran; petportrait_http_requests_total{method,
route,code} and petportrait_http_request_duration_seconds{route} for the requests it answered; and the
periodic tasks' last success, interval and failures (`jobs.worker.PERIODIC_REGISTRY`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from petportrait.accounts import service as accounts_service
from petportrait.clock import utcnow
from petportrait.integrations import service as integrations_service
from petportrait.jobs import service as jobs_service
from petportrait.jobs.worker import PERIODIC_REGISTRY
from petportrait.notifications import service as notifications_service
from petportrait.registry import registry_of
from petportrait.retention import holds, policy
from petportrait.retention.models import LegalHold, SweepRun, Tombstone
from petportrait.settings import Settings

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

PROCESS_REGISTRY = CollectorRegistry()
SWEEP_DURATION = Histogram(
    "petportrait_sweep_duration_seconds",
    "Duration of the sweeps this process ran.",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
    registry=PROCESS_REGISTRY,
)
SWEEP_PURGED = Counter(
    "petportrait_sweep_purged_items",
    "Items the sweeps of this process deleted.",
    ["kind"],
    registry=PROCESS_REGISTRY,
)

HTTP_REQUESTS = Counter(
    "petportrait_http_requests",
    "Requests this process answered, by method, route template and status code.",
    ["method", "route", "code"],
    registry=PROCESS_REGISTRY,
)
HTTP_DURATION = Histogram(
    "petportrait_http_request_duration_seconds",
    "How long this process took to answer, by route template.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=PROCESS_REGISTRY,
)


def observe_request(*, method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request (called by the web layer's request middleware)."""
    HTTP_REQUESTS.labels(method=method, route=route, code=str(status)).inc()
    HTTP_DURATION.labels(route=route).observe(seconds)


def observe_sweep(report: Any) -> None:
    """Note one sweep's duration and counts (called by the sweeper)."""
    if not report.ran:
        return
    SWEEP_DURATION.observe(report.duration_seconds)
    for kind, count in report.purged.items():
        SWEEP_PURGED.labels(kind=kind).inc(count)


def _count(session: Session, query: Any) -> int:
    return int(session.scalar(query) or 0)


def item_states(session: Session, *, now: datetime, settings: Settings) -> dict[str, dict[str, int]]:
    """Per kind: how many items are live, due, held and deleted."""
    states: dict[str, dict[str, int]] = {}
    for kind, model in registry_of(session).item_models.items():
        due = policy.due_clause(
            model, now=now, settings=settings, erased=registry_of(session).erased_owners()
        )
        held = holds.held_clause(kind, model.id, model.owner_id, at=now)
        base = select(func.count()).select_from(model)
        total = _count(session, select(func.count()).select_from(model))
        due_count = _count(session, base.where(due, ~held))
        held_count = _count(session, base.where(due, held))
        deleted = _count(session, select(func.count()).select_from(Tombstone).where(Tombstone.kind == kind))
        states[kind] = {
            "live": total - due_count - held_count,
            "due": due_count,
            "held": held_count,
            "deleted": deleted,
        }
    return states


def oldest_overdue_seconds(session: Session, *, now: datetime, settings: Settings) -> dict[str, float]:
    """Per kind: seconds since the oldest due, unheld item fell due (0 when there is none)."""
    ages: dict[str, float] = {}
    for kind, model in registry_of(session).item_models.items():
        not_held = ~holds.held_clause(kind, model.id, model.owner_id, at=now)
        base = select().select_from(model).where(not_held)
        due_times: list[datetime] = []
        first_expiry = session.scalar(
            base.add_columns(func.min(model.expires_at)).where(model.expires_at <= now)
        )
        if first_expiry is not None:
            due_times.append(first_expiry)
        length = policy.period(kind, settings)
        if length is not None:
            clock = getattr(model, policy.KINDS[kind].clock)
            first_start = session.scalar(
                base.add_columns(func.min(clock)).where(model.expires_at.is_not(None), clock <= now - length)
            )
            if first_start is not None:
                due_times.append(first_start + length)
        erased = accounts_service.erasures()
        first_erasure = session.scalar(
            base.add_columns(func.min(erased.c.erased_at)).join(erased, erased.c.id == model.owner_id)
        )
        if first_erasure is not None:
            due_times.append(first_erasure)
        ages[kind] = max(0.0, (now - min(due_times)).total_seconds()) if due_times else 0.0
    return ages


class _StateCollector(Collector):
    def __init__(self, session: Session, now: datetime, settings: Settings) -> None:
        self.session = session
        self.now = now
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        items = GaugeMetricFamily(
            "petportrait_retention_items",
            "Stored items by kind and lifecycle state.",
            labels=["kind", "state"],
        )
        for kind, states in item_states(self.session, now=self.now, settings=self.settings).items():
            for state, count in states.items():
                items.add_metric([kind, state], count)
        yield items
        overdue = GaugeMetricFamily(
            "petportrait_retention_oldest_overdue_seconds",
            "Seconds since the oldest due, unheld item fell due (0 when none).",
            labels=["kind"],
        )
        for kind, age in oldest_overdue_seconds(self.session, now=self.now, settings=self.settings).items():
            overdue.add_metric([kind], age)
        yield overdue
        active = _count(
            self.session,
            select(func.count()).select_from(LegalHold).where(holds.active_at_clause(self.now)),
        )
        yield GaugeMetricFamily("petportrait_legal_holds_active", "Legal holds in force.", value=active)
        last = self.session.scalars(select(SweepRun).order_by(SweepRun.started_at.desc()).limit(1)).first()
        duration = GaugeMetricFamily(
            "petportrait_sweep_last_duration_seconds", "Duration of the newest recorded sweep."
        )
        when = GaugeMetricFamily(
            "petportrait_sweep_last_run_timestamp_seconds", "When the newest recorded sweep started."
        )
        purged = GaugeMetricFamily(
            "petportrait_sweep_last_purged_items", "Items the newest recorded sweep deleted."
        )
        if last is not None:
            duration.add_metric([], last.duration_seconds)
            when.add_metric([], last.started_at.timestamp())
            purged.add_metric([], last.purged)
        yield duration
        yield when
        yield purged
        waiting = GaugeMetricFamily(
            "petportrait_jobs_oldest_queued_seconds",
            "Seconds the oldest claimable queued job of each kind has waited (absent when none).",
            labels=["kind"],
        )
        for kind, age in jobs_service.oldest_queued_seconds(self.session, now=self.now).items():
            waiting.add_metric([kind], age)
        yield waiting
        outbox = GaugeMetricFamily(
            "petportrait_outbox_messages", "Email outbox messages by state.", labels=["state"]
        )
        for state, count in notifications_service.outbox_counts(self.session).items():
            outbox.add_metric([state], count)
        yield outbox
        endpoints = GaugeMetricFamily(
            "petportrait_webhook_endpoints", "Webhook endpoints by state.", labels=["state"]
        )
        for state, count in integrations_service.endpoint_counts(self.session).items():
            endpoints.add_metric([state], count)
        yield endpoints


def render(session: Session, *, settings: Settings, now: datetime | None = None) -> bytes:
    """The exposition text: the lifecycle state from the database and this process's sweep metrics."""
    registry = CollectorRegistry()
    registry.register(_StateCollector(session, now or utcnow(), settings))
    return generate_latest(registry) + generate_latest(PROCESS_REGISTRY) + generate_latest(PERIODIC_REGISTRY)
