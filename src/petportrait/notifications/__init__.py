"""Notifications: email through an outbox (messages, preferences, reminders, delivery, retention)."""

from __future__ import annotations

import os
import socket

from petportrait.notifications import outbox
from petportrait.registry import Registry, Services, Store

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


def deliver(services: Services) -> object:
    """Periodic: send the messages that are due."""
    from petportrait.notifications import service

    return service.deliver_due(services.session_factory, services.settings, worker_id=WORKER_ID)


def remind(services: Services) -> object:
    """Periodic: write the 3-day reminders of portraits and photos."""
    from petportrait.notifications import service

    with services.session_factory() as session:
        report = service.send_reminders(session)
        session.commit()
    return report


def sweep(services: Services) -> object:
    """Periodic: delete sent messages and their .eml files once what they mention is deleted."""
    from petportrait.notifications import service

    with services.session_factory() as session:
        count = service.sweep(session, outbox_dir=services.settings.outbox_dir)
        session.commit()
    return count


def register(registry: Registry) -> None:
    """Subscribe the outbox to the domains' events; the delivery, reminder and sweep periodic tasks."""
    from petportrait.notifications import service

    registry.add_domain("notifications")
    for name, fn in service.SUBSCRIBERS.items():
        registry.subscribe(name, fn)
    registry.add_periodic("notifications.deliver", lambda s: s.email.deliver_interval_seconds, deliver)
    registry.add_periodic("notifications.reminders", lambda s: s.email.reminder_interval_seconds, remind)
    registry.add_periodic("notifications.sweep", lambda s: 3600.0, sweep)
    registry.add_table_rule(
        "outbox_messages",
        "Deleted with what it names (a pet, a model, a portrait...), 30 days after it was written otherwise, "
        "and with the account on erasure, in every state; an erasure receipt is forgotten once sent; its "
        ".eml file goes with it.",
        owner="notifications",
        holds="an email: address, subject and body (pet names, dates, links); a delivery error with the "
        "address replaced by the account id",
        personal=("to_address", "subject", "text_body", "html_body", "data"),
        free_text=("last_error",),
        ends_with_subjects=outbox.end_with,
        owner_column="user_id",
        residues=outbox.residues,
    )
    registry.add_store(
        Store(
            name="folder:outbox",
            medium="folder",
            location="outbox",
            holds="the .eml file of each message sent without SMTP (the development mail folder)",
            source="outbox_messages",
            ends="with its message row",
            owner="notifications",
        )
    )
    registry.add_table_rule(
        "email_preferences",
        "Kept while the account exists; deleted with it.",
        owner="notifications",
        owner_column="user_id",
    )
    registry.add_table_rule(
        "email_reminders", "Deleted a day after the item it reminded of expired.", owner="notifications"
    )
    registry.add_export_section("emails", service.export_section)
