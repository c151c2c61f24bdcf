"""Webhooks: a person's endpoints, signed deliveries of events (Standard Webhooks), retries, SSRF guards."""

from __future__ import annotations

import os
import socket

from petportrait.registry import Registry, Services

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


def deliver(services: Services) -> object:
    """Periodic: send the deliveries that are due."""
    from petportrait.integrations import service

    return service.deliver_due(services.session_factory, services.settings, worker_id=WORKER_ID)


def sweep(services: Services) -> object:
    """Periodic: delete old deliveries and the endpoints of erased accounts."""
    from petportrait.integrations import service

    with services.session_factory() as session:
        count = service.sweep(session)
        session.commit()
    return count


def register(registry: Registry) -> None:
    """Subscribe deliveries to the public events; the delivery and sweep periodic tasks."""
    from petportrait.integrations import service

    registry.add_domain("webhooks")
    for name in service.EVENTS:
        registry.subscribe(name, service.on_event, many=service.on_events)
    registry.subscribe("account.erased", service.on_account_erased)
    registry.add_periodic("webhooks.deliver", lambda s: s.webhooks.deliver_interval_seconds, deliver)
    registry.add_periodic("webhooks.sweep", lambda s: 3600.0, sweep)
    registry.add_table_rule(
        "webhook_endpoints",
        "Kept until the person deletes the endpoint; removed 2 days after the account is erased.",
        owner="webhooks",
    )
    registry.add_table_rule(
        "webhook_deliveries",
        "Deleted 30 days after the event, or with their endpoint.",
        owner="webhooks",
    )
    registry.add_export_section("webhooks", service.export_section)
