"""The composition root: every entry point gets the same registry, built on purpose, not by import order."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.util.exc import CommandError
from sqlalchemy import create_engine, make_url, text

from petportrait.migrate import alembic_config, upgrade
from petportrait.registry import Registry, RegistryError
from petportrait.retention import policy
from petportrait.services import DOMAINS, build_registry

# Run in a fresh interpreter: what a `petportrait worker` process has, with the web package never imported.
WORKER_PROBE = textwrap.dedent(
    """
    import json, sys
    from petportrait.services import build_consumer, build_services
    from petportrait.settings import Settings

    settings = Settings(environment="development", data_dir=sys.argv[1], queue={"embedded_consumer": False})
    services = build_services(settings, migrate=True)
    consumer = build_consumer(services, periodic=True)
    registry = services.registry
    web = ("petportrait.web.", "fastapi", "starlette")  # jinja2 is allowed: it renders the emails
    print(json.dumps({
        "web_loaded": sorted(m for m in sys.modules if m == "petportrait.web" or m.startswith(web)),
        "item_kinds": list(registry.item_models),
        "erasure_hooks": sorted(registry.erasure_hooks),
        "export_sections": sorted(registry.export_sections),
        "job_handlers": sorted(registry.job_handlers),
        "periodic": sorted(task.name for task in consumer.periodic_tasks),
        "prompt_screens": sorted(registry.prompt_screens),
    }))
    services.engine.dispose()
    """
)


def test_a_worker_process_has_every_kind_hook_section_and_task_without_the_web_layer(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", WORKER_PROBE, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["web_loaded"] == [], "a worker must not load the web layer"
    assert seen["item_kinds"] == ["render", "model", "photo", "marketing"]
    assert {"consent.withdraw_all", "rights.scrub_generations"} <= set(seen["erasure_hooks"])
    assert {"consent_receipts", "licences", "emails", "webhooks"} <= set(seen["export_sections"])
    assert seen["job_handlers"] == ["render", "train"]
    assert {"case-deadlines", "reaper", "sweeper", "notifications.deliver", "webhooks.deliver"} <= set(
        seen["periodic"]
    )
    assert seen["prompt_screens"] == ["content_policy"]


def test_every_kind_the_policy_names_has_a_table() -> None:
    registry = build_registry()
    assert set(registry.item_models) == set(policy.KINDS)
    for kind, model in registry.item_models.items():
        assert model.retention_kind == kind
    assert registry.frozen


def test_building_the_root_fails_with_a_sentence_when_a_kind_has_no_table() -> None:
    registry = Registry(item_kinds=policy.item_kinds())
    for domain in DOMAINS:
        if domain.__name__ != "petportrait.consent":  # the marketing library's table goes missing
            domain.register(registry)
    with pytest.raises(RegistryError, match="no domain registered a table for: marketing"):
        registry.validate(job_kinds=("train", "render"))


def test_building_the_root_fails_when_a_job_kind_has_no_handler() -> None:
    registry = Registry(item_kinds=policy.item_kinds())
    for domain in DOMAINS:
        domain.register(registry)
    with pytest.raises(RegistryError, match="handler for jobs of kind upscale"):
        registry.validate(job_kinds=("train", "render", "upscale"))


def test_a_frozen_registry_takes_nothing_more() -> None:
    registry = build_registry()
    with pytest.raises(RegistryError, match="frozen"):
        registry.add_erasure_hook("late", lambda session, user_id, actor_id: None)


def test_a_domain_registering_twice_is_refused() -> None:
    registry = Registry(item_kinds=policy.item_kinds())
    DOMAINS[0].register(registry)
    with pytest.raises(RegistryError, match="registered twice"):
        DOMAINS[0].register(registry)


def test_a_table_without_its_kinds_columns_is_refused() -> None:
    from petportrait.accounts.models import User

    registry = Registry(item_kinds=policy.item_kinds())
    with pytest.raises(RegistryError, match=r"User of kind 'photo' has no owner_id column"):
        registry.add_item_kind("photo", User)


@pytest.fixture
def empty_database_url(tmp_path: Path) -> Iterator[str]:
    """A database of its own, on the backend this run tests: a SQLite file, or (when the configured URL names
    PostgreSQL) a scratch database next to the configured one, dropped afterwards."""
    configured = os.environ.get("PETPORTRAIT__DATABASE__URL", "")
    if not configured.startswith("postgresql"):
        yield f"sqlite:///{tmp_path / 'check.sqlite3'}"
        return
    url = make_url(configured)
    name = f"{url.database}_migcheck_{secrets.token_hex(4)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_models_and_migrations_agree(empty_database_url: str) -> None:
    engine = create_engine(empty_database_url)
    assert engine.dialect.name == ("postgresql" if "postgresql" in empty_database_url else "sqlite")
    upgrade(engine)
    cfg = alembic_config(str(engine.url))
    try:
        command.check(cfg)
    except CommandError as exc:  # pragma: no cover - the message lists what differs
        pytest.fail(f"the models and the migrations differ: {exc}")
    finally:
        engine.dispose()
