"""Everything the service makes in the data folder is the service user's only (0700/0600), whatever the
umask (issue 19): the SQLite database with its -wal and -shm files, the queue, blobs, keys, outbox mail.

Real components: the app over HTTP on a fresh data folder with encrypted local blobs, SQLite (or the
PostgreSQL of PETPORTRAIT__DATABASE__URL, then without a database file), the SQLite queue, the file outbox.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from petportrait.notifications import service as notifications
from petportrait.services import build_services
from petportrait.web.app import create_app
from tests.conftest import make_settings, sign_up
from tests.lifecycle.test_rights_api import new_pet, upload


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask: what is made is exactly the mode the code asks for."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def test_a_flow_leaves_only_owner_only_files_and_folders_in_the_data_folder(
    tmp_path: Path, open_umask: None
) -> None:
    data_dir = tmp_path / "var" / "petportrait"  # folders above it are made too
    services = build_services(make_settings(data_dir, email={"smtp_url": None}), migrate=True)
    with TestClient(create_app(services=services), raise_server_exceptions=False) as client:
        headers = sign_up(client, "modes@example.com")
        pet = new_pet(client, headers)
        upload(client, headers, pet, "dog", 0)
        report = notifications.deliver_due(services.session_factory, services.settings, worker_id="w")
        assert report.sent  # the welcome message, as a .eml file
        assert client.post("/api/v1/me/export", headers=headers).status_code == 200
        made = {path.relative_to(data_dir).as_posix(): path for path in data_dir.rglob("*")}
        wrong = {
            name: oct(stat.S_IMODE(path.lstat().st_mode))
            for name, path in made.items()
            if stat.S_IMODE(path.lstat().st_mode) != (0o700 if path.is_dir() else 0o600)
        }
    services.engine.dispose()
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(data_dir.parent.stat().st_mode) == 0o700
    assert wrong == {}
    names = set(made)
    assert any(name.endswith(".eml") for name in names), names
    assert any(name.startswith("blobs/photos/") for name in names), names
    assert {"keys/kek.b64", "queue.sqlite3"} <= names
    if services.engine.dialect.name == "sqlite":
        assert {"petportrait.sqlite3", "petportrait.sqlite3-wal", "petportrait.sqlite3-shm"} <= names
