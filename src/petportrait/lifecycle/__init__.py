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
from petportrait.registry import Event, Registry, Services, Store, registry_of

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
    for store in INFRASTRUCTURE:
        registry.add_store(store)


# The places the ground and the engines write to, declared here, by the aggregate that sweeps them: they
# belong to no domain (the queue, rate limits, the blob store, key files, the model cache, the logs).
INFRASTRUCTURE = (
    Store(
        name="blobs:items",
        medium="blobs",
        location="blobs",
        holds="the photos, models, portraits and marketing copies, each sealed under its own data key",
        source="item",
        ends="with its item: the sweeper or the person's deletion destroys its data key, then the blob",
        owner="lifecycle",
    ),
    Store(
        name="folder:keys",
        medium="folder",
        location="keys",
        holds="no personal data: the development key-encryption key and signing keys (0600)",
        source="none",
        ends="kept while the deployment is",
        owner="lifecycle",
    ),
    Store(
        name="folder:models",
        medium="folder",
        location="models",
        holds="no personal data: the preview model and cached base models",
        source="none",
        ends="kept while the deployment is",
        owner="lifecycle",
    ),
    Store(
        name="folder:style-examples",
        medium="folder",
        location="style-examples",
        holds="no personal data: each style's example images, made from the preview model's stock subject",
        source="none",
        ends="kept while the deployment is; made again when missing",
        owner="lifecycle",
    ),
    Store(
        name="folder:scratch",
        medium="folder",
        location="scratch",
        holds="nothing this version writes; earlier versions' workers left crops there",
        source="photo",
        ends="the sweeper deletes whatever is in it, and `retention check` names it",
        owner="lifecycle",
    ),
    Store(
        name="queue:jobs",
        medium="queue",
        location="huey.",
        holds="job ids only (the job's row is the source of truth); never photos, names or prompts",
        source="none",
        ends="a message is consumed when its job runs; a job's row ends as its item does",
        owner="lifecycle",
    ),
    Store(
        name="redis:rate-limits",
        medium="redis",
        location="{limits_namespace}:limits",
        holds="counters under keyed hashes of an address or account, never the address or email itself",
        source="account",
        ends="each counter expires with its window (at most an hour)",
        owner="lifecycle",
    ),
    Store(
        name="log:processes",
        medium="log",
        holds="ids, kinds, states, counts and errors with addresses replaced by account ids; never email "
        "addresses, names, prompts or file names (README, 'What the logs hold')",
        source="none",
        ends="as long as the operator keeps logs (the README advises 14 days)",
        owner="lifecycle",
    ),
)
