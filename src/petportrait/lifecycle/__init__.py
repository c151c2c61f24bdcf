"""Data lifecycle, the aggregate over every domain: the sweeper, erasure, export and the retention check.

It reaches the domains through the registry (item kinds, erasure hooks, export sections); what every
domain calls lives in `petportrait.retention` (policy, holds, audit chain, tombstones, leases).

API: GET /api/v1/me/deletions, DELETE /api/v1/me/items/{kind}/{id}, DELETE /api/v1/me,
POST /api/v1/me/export, /api/v1/admin/holds (admin), /metrics.
CLI: petportrait retention check | holds | sweep, petportrait sweep, petportrait audit verify,
petportrait storage lifecycle [--apply].
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from petportrait.lifecycle import sweeper
from petportrait.registry import Event, Registry, Services, registry_of

# Events that end a subject: every copy that names it (a stored answer, a message, a delivery) goes too.
SUBJECT_EVENTS = {"item.deleted": "item_id", "pet.deleted": "pet_id"}


def _sweep(services: Services) -> object:
    """Delete what passed its retention period (the sweeper takes a lease of its own)."""
    return sweeper.sweep_once(services.session_factory, services.blobs, settings=services.settings)


def end_copies(session: Session, events: Sequence[Event]) -> None:
    """Lineage: in the transaction that deletes items or pets, delete every copy that names them."""
    ids = sorted(
        {str(e.data[SUBJECT_EVENTS[e.name]]) for e in events if SUBJECT_EVENTS.get(e.name) in e.data}
    )
    if ids:
        for end in registry_of(session).subject_ends:
            end(session, ids)


def register(registry: Registry) -> None:
    """What the lifecycle aggregate contributes: the periodic sweep, and lineage (copies end with their
    source)."""
    registry.add_domain("lifecycle")
    for event in SUBJECT_EVENTS:
        registry.subscribe(event, lambda session, one: end_copies(session, [one]), many=end_copies)
    registry.add_periodic("sweeper", sweeper.interval, _sweep)
    registry.add_table_rule(
        "leases", "no personal data (lease names, holders are host:pid)", owner="lifecycle"
    )
