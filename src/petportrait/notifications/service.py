"""The notifications domain's public functions: email through an outbox.

Messages are written in the transaction of the event that causes them (`subscribers`, `outbox`), a periodic
task delivers them (`delivery`, which states the delivery guarantee), reminders are written before items are
deleted (`reminders`), and the person chooses what they get (`preferences`). Other code calls this module;
the modules behind it are the domain's own.
"""

from __future__ import annotations

from petportrait.notifications.delivery import (
    DeliveryReport,
    backoff,
    claim,
    deliver_due,
    problems,
    retry,
)
from petportrait.notifications.outbox import enqueue, export_section, outbox_counts, sweep
from petportrait.notifications.preferences import preferences, set_preferences
from petportrait.notifications.reminders import ReminderReport, send_reminders
from petportrait.notifications.subscribers import SUBSCRIBERS, on_token_created

__all__ = [
    "SUBSCRIBERS",
    "DeliveryReport",
    "ReminderReport",
    "backoff",
    "claim",
    "deliver_due",
    "enqueue",
    "export_section",
    "on_token_created",
    "outbox_counts",
    "preferences",
    "problems",
    "retry",
    "send_reminders",
    "set_preferences",
    "sweep",
]
