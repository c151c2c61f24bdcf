"""The composition root: builds the services of a process and the registry of what the domains contribute.

Entry points (the web app, the CLI, the worker) get their services here and nowhere else. Each domain
contributes through its `register(registry)`, called below in a fixed order; nothing registers itself by
being imported. Building fails at start-up, with a sentence, if the retention policy names a kind that no
domain gave a table, or a job kind has no handler.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sqlalchemy.orm import Session, sessionmaker

from petportrait import (
    accounts,
    consent,
    idempotency,
    integrations,
    lifecycle,
    notifications,
    pets,
    portraits,
    retention,
    rights,
)
from petportrait.db import make_engine, make_session_factory
from petportrait.files import private_dir
from petportrait.jobs.huey_queue import create_queue
from petportrait.jobs.worker import Consumer
from petportrait.lifecycle import vacuum
from petportrait.portraits.models import JobKind
from petportrait.registry import PromptScreen, Registry, Services
from petportrait.retention import policy
from petportrait.retention.kek import verify_kek
from petportrait.retention.keys import encrypted_store, load_kek, load_previous_kek
from petportrait.settings import Settings
from petportrait.storage import create_blob_store
from petportrait.telemetry import instrument_engine

log = logging.getLogger(__name__)

# The order in which domains register: lower domains first, the lifecycle aggregate last.
DOMAINS = (
    retention,
    idempotency,
    accounts,
    pets,
    portraits,
    rights,
    consent,
    notifications,
    integrations,
    lifecycle,
)


def build_registry(*, screens: Mapping[str, PromptScreen] | None = None) -> Registry:
    """A registry with every domain's contribution, validated against the retention policy and frozen;
    `screens` adds prompt screens of the deployment's own (a content classifier, say)."""
    registry = Registry(item_kinds=policy.item_kinds())
    for domain in DOMAINS:
        domain.register(registry)
    for name, screen in (screens or {}).items():
        registry.add_prompt_screen(name, screen)
    registry.validate(job_kinds=tuple(kind.value for kind in JobKind))
    registry.freeze()
    return registry


def build_services(
    settings: Settings, *, migrate: bool | None = None, registry: Registry | None = None
) -> Services:
    """Open the database, blob store and queue; migrate SQLite automatically (or when asked)."""
    registry = registry or build_registry()
    private_dir(settings.data_dir)
    engine = make_engine(settings.database_url, echo=settings.database.echo)
    instrument_engine(engine)
    if migrate is None:
        migrate = engine.dialect.name == "sqlite"
    if migrate:
        from petportrait.migrate import upgrade

        upgrade(engine, settings=settings)
    session_factory = make_session_factory(engine, info={"registry": registry, "settings": settings})
    check_kek(settings, session_factory)
    vacuum.warn_autovacuum(engine, registry)
    inner = create_blob_store(settings)
    if settings.storage.backend == "s3":
        from petportrait.lifecycle.s3rules import warn_versioning  # boto3 only when S3 is used

        warn_versioning(inner, settings)
    return Services(
        settings=settings,
        engine=engine,
        session_factory=session_factory,
        blobs=encrypted_store(settings, session_factory, inner),
        queue=create_queue(settings),
        registry=registry,
    )


def check_kek(settings: Settings, session_factory: sessionmaker[Session]) -> None:
    """Refuse to start (retention.kek.KekMismatch) with a key-encryption key that is not the database's."""
    warning = verify_kek(session_factory, load_kek(settings), load_previous_kek(settings))
    if warning:
        log.warning(warning)


def build_consumer(services: Services, *, worker_id: str | None = None, periodic: bool = True) -> Consumer:
    """A job consumer for these services: the registered job handlers and periodic tasks."""
    return Consumer(
        settings=services.settings,
        session_factory=services.session_factory,
        blobs=services.blobs,
        queue=services.queue,
        handlers=services.registry.job_handlers,
        periodic_tasks=[
            (task.name, task.interval(services.settings), lambda task=task: task.run(services))
            for task in services.registry.periodic_tasks
        ],
        worker_id=worker_id,
        periodic=periodic,
    )
