"""Portraits: models trained on a pet's photos and the portraits rendered from them."""

from __future__ import annotations

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
