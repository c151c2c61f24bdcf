"""Portraits: models trained on a pet's photos and the portraits rendered from them."""

from __future__ import annotations

from petportrait.portraits import ended
from petportrait.portraits.models import JobKind, PetModel, Render
from petportrait.portraits.runner import PortraitJobs
from petportrait.registry import Registry


def register(registry: Registry) -> None:
    """What the portraits domain contributes: the tables of models and renders, and their jobs' handler."""
    registry.add_domain("portraits")
    registry.add_item_kind("render", Render)
    registry.add_item_kind("model", PetModel)
    jobs = PortraitJobs()
    registry.add_job_handler(JobKind.TRAIN.value, jobs)
    registry.add_job_handler(JobKind.RENDER.value, jobs)
    registry.add_periodic(
        "portraits.sweep_ended", lambda s: float(s.retention.sweep_interval_seconds), ended.sweep_ended
    )
    registry.add_table_rule(
        "jobs",
        "a train or render job is deleted once it finished longer ago than the render period (30 days by "
        "default), and with an erased account once finished; failed and cancelled models and renders are "
        "made "
        "due after that period and swept like any item",
        owner="portraits",
    )
