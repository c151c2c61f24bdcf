"""Data lifecycle, the aggregate over every domain: the sweeper, erasure, export and the retention check.

It reaches the domains through the registry (item kinds, erasure hooks, export sections); what every
domain calls lives in `petportrait.retention` (policy, holds, audit chain, tombstones, leases).

API: GET /api/v1/me/deletions, DELETE /api/v1/me/items/{kind}/{id}, DELETE /api/v1/me,
POST /api/v1/me/export, /api/v1/admin/holds (admin), /metrics.
CLI: petportrait retention check | holds | sweep, petportrait sweep, petportrait audit verify,
petportrait storage lifecycle [--apply].
"""

from __future__ import annotations

from petportrait.lifecycle import sweeper
from petportrait.registry import Registry, Services


def _sweep(services: Services) -> object:
    """Delete what passed its retention period (the sweeper takes a lease of its own)."""
    return sweeper.sweep_once(services.session_factory, services.blobs, settings=services.settings)


def register(registry: Registry) -> None:
    """What the lifecycle aggregate contributes: the periodic sweep."""
    registry.add_domain("lifecycle")
    registry.add_periodic("sweeper", sweeper.interval, _sweep)
    registry.add_table_rule(
        "leases", "no personal data (lease names, holders are host:pid)", owner="lifecycle"
    )
