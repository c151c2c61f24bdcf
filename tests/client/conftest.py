"""A live server for the client: uvicorn in a thread on a free port, its embedded consumer on, the preview
model with short trainings (6 steps, 64 px), a fresh data folder (SQLite, or the PostgreSQL named by
PETPORTRAIT__DATABASE__URL)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from petportrait.web.app import Services, build_services
from tests.conftest import make_settings
from tests.jobs.stack import FAST_ML
from tests.live import live_server

PASSWORD = "correct horse battery staple"


@dataclass
class Live:
    url: str
    services: Services
    data_dir: Path

    def address(self, name: str) -> str:
        """A unique email address (a PostgreSQL database may hold accounts of earlier runs)."""
        return f"{name}-{secrets.token_hex(4)}@example.com"


@pytest.fixture(scope="package")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("client-live")
    settings = make_settings(
        root,
        ml=dict(FAST_ML),
        queue={"embedded_consumer": True, "name": f"client-{secrets.token_hex(4)}", "heartbeat_seconds": 0.5},
    )
    services = build_services(settings, migrate=True)
    with live_server(services, consumer=True) as url:
        yield Live(url=url, services=services, data_dir=root)
    services.queue.flush()
    services.engine.dispose()
