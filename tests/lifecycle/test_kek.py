"""The key-encryption key: a wrong one is refused at start-up, and `keys rotate` re-wraps every data key.

Real components: a SQLite database in the data folder (or the PostgreSQL of PETPORTRAIT__DATABASE__URL),
the local blob folder, the command line in-process (CliRunner) and, for the kill, in a process of its own.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from petportrait.cli import app
from petportrait.clock import utcnow
from petportrait.db import insert_rows
from petportrait.registry import Services
from petportrait.retention.kek import KekMismatch, rotate
from petportrait.retention.keys import kek_path
from petportrait.retention.models import AuditEntry, DataKey, KekCheck
from petportrait.services import build_services
from petportrait.settings import Settings, get_settings
from petportrait.storage.crypto import BlobDecryptError, kek_id, unwrap_key, wrap_key
from tests.conftest import make_settings

OLD = secrets.token_bytes(32)
NEW = secrets.token_bytes(32)
ROOT = Path(__file__).resolve().parents[2]
OWNER = "a" * 32


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def keyed_settings(
    data_dir: Path, kek: bytes, previous: bytes | None = None, secret: str = "s" * 64
) -> Settings:
    security = {"secret_key": secret, "cookie_secure": False, "key_encryption_key": b64(kek)}
    if previous is not None:
        security["previous_key_encryption_key"] = b64(previous)
    return make_settings(data_dir, security=security)


def start(data_dir: Path, kek: bytes, previous: bytes | None = None) -> Services:
    return build_services(keyed_settings(data_dir, kek, previous), migrate=True)


def seed_keys(services: Services, kek: bytes, count: int) -> dict[str, bytes]:
    """`count` data keys wrapped under `kek`, as the blob store makes them; returns the plain data keys."""
    plain = {f"photos/{OWNER}/{'b' * 32}/{n:06d}.jpg": secrets.token_bytes(32) for n in range(count)}
    rows = [
        {
            "storage_key": key,
            "owner_id": OWNER,
            "wrapped_key": wrap_key(kek, data_key, key),
            "created_at": utcnow(),
            "kek_id": kek_id(kek).hex(),
        }
        for key, data_key in plain.items()
    ]
    with services.engine.begin() as conn:
        insert_rows(conn, DataKey.__table__, rows)  # type: ignore[arg-type]
    return plain


def under(services: Services, kek: bytes) -> int:
    with services.session_factory() as session:
        return int(session.scalar(select(func.count()).where(DataKey.kek_id == kek_id(kek).hex())) or 0)


@pytest.fixture(autouse=True)
def _empty_tables(services: Services) -> None:
    """Each test from empty tables (the `services` fixture empties them): on PostgreSQL the tests share
    one database, and a rotation re-wraps every data key in it."""


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The command line's settings from the environment, on a data folder of this test."""
    data_dir = tmp_path / "var"
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "PETPORTRAIT__ENVIRONMENT": "development",
        "PETPORTRAIT__DATA_DIR": str(data_dir),
        "PETPORTRAIT__QUEUE__EMBEDDED_CONSUMER": "false",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield data_dir
    get_settings.cache_clear()


def test_serve_worker_and_migrate_refuse_another_key_encryption_key_before_taking_anything(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["migrate"])  # the first start records the data folder's KEK
    assert first.exit_code == 0, first.output
    made = kek_path(get_settings())
    assert made.exists()
    services = build_services(get_settings())
    services.engine.dispose()

    made.unlink()  # the data folder's key is lost: the next start makes another one ...
    get_settings.cache_clear()
    for command in (["serve"], ["worker"], ["migrate"], ["retention", "check"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, (command, result.output)
        assert "is not the key of this database" in result.output, result.output
        assert "Rotating the key-encryption key" in result.output  # ... and is told of the runbook
    monkeypatch.setenv("PETPORTRAIT__SECURITY__KEY_ENCRYPTION_KEY", b64(NEW))
    get_settings.cache_clear()
    assert runner.invoke(app, ["serve"]).exit_code == 2  # a configured key is checked the same way
    with pytest.raises(KekMismatch):
        build_services(get_settings())


def test_an_upload_is_never_taken_under_a_wrong_key(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from petportrait.web.app import create_app

    start(tmp_path, OLD).engine.dispose()
    with pytest.raises(KekMismatch, match="refuses to start"):
        create_app(keyed_settings(tmp_path, NEW))  # no app, so no upload route to take anything
    services = start(tmp_path, OLD)  # the right key starts
    with TestClient(create_app(services=services)) as client:
        assert client.get("/healthz").status_code == 200
    services.engine.dispose()


def test_rotation_rewraps_every_key_resumes_after_a_stop_and_retires_the_old_key(tmp_path: Path) -> None:
    services = start(tmp_path, OLD)
    plain = seed_keys(services, OLD, 120)
    blob_key = f"renders/{OWNER}/{'c' * 32}/one.png"
    services.blobs.put_bytes(blob_key, b"a portrait")
    services.engine.dispose()

    with pytest.raises(KekMismatch):  # the new key alone, before any rotation: refused
        start(tmp_path, NEW)
    services = start(tmp_path, NEW, previous=OLD)  # both keys: a rotation is pending
    assert services.blobs.get_bytes(blob_key) == b"a portrait"  # still opens, under the old key
    new_blob = f"renders/{OWNER}/{'c' * 32}/two.png"
    services.blobs.put_bytes(new_blob, b"another")  # a new key is wrapped under the new KEK
    assert under(services, NEW) == 1

    class Stop(Exception):
        pass

    def stop_after_two_batches(report: object) -> None:
        if getattr(report, "rewrapped", 0) >= 50:
            raise Stop

    with pytest.raises(Stop):  # a crash between two batches
        rotate(services.session_factory, NEW, OLD, batch_size=25, progress=stop_after_two_batches)
    assert under(services, NEW) == 51 and under(services, OLD) == 71  # 120 keys and a blob
    services.engine.dispose()
    with pytest.raises(KekMismatch, match="has not finished"):  # the old key is still needed
        start(tmp_path, NEW)
    with pytest.raises(KekMismatch):  # and the old key alone is no longer the database's
        start(tmp_path, OLD)

    services = start(tmp_path, NEW, previous=OLD)
    report = rotate(services.session_factory, NEW, OLD, batch_size=25)
    assert report.finished and report.remaining == 0 and report.rewrapped == 71
    with services.session_factory() as session:
        wrapped = dict(session.execute(select(DataKey.storage_key, DataKey.wrapped_key)).tuples().all())
        actions = list(session.scalars(select(AuditEntry.action).where(AuditEntry.subject_kind == "kek")))
        roles = dict(session.execute(select(KekCheck.kek_id, KekCheck.role)).tuples().all())
    assert actions == ["kek.rotation_started", "kek.rotation_resumed", "kek.rotation_finished"]
    assert roles == {kek_id(NEW).hex(): "current", kek_id(OLD).hex(): None}
    for key, data_key in plain.items():  # every key opens under the new KEK alone, to the same data key
        assert unwrap_key(NEW, wrapped[key], key) == data_key
        with pytest.raises(BlobDecryptError):
            unwrap_key(OLD, wrapped[key], key)
    services.engine.dispose()

    services = start(tmp_path, NEW)  # the previous key can go
    assert services.blobs.get_bytes(blob_key) == b"a portrait"
    assert services.blobs.get_bytes(new_blob) == b"another"
    services.engine.dispose()
    with pytest.raises(KekMismatch):
        start(tmp_path, OLD)  # the retired key alone is refused


def test_keys_rotate_killed_midway_finishes_when_run_again(cli_env: Path) -> None:
    env = {
        **os.environ,
        "PETPORTRAIT__SECURITY__KEY_ENCRYPTION_KEY": b64(OLD),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
    }
    services = build_services(
        get_settings().model_copy(update={"security": keyed_settings(cli_env, OLD).security})
    )
    seed_keys(services, OLD, 10_000)
    env["PETPORTRAIT__SECURITY__KEY_ENCRYPTION_KEY"] = b64(NEW)
    env["PETPORTRAIT__SECURITY__PREVIOUS_KEY_ENCRYPTION_KEY"] = b64(OLD)
    env["PETPORTRAIT__SECURITY__SECRET_KEY"] = "s" * 64
    process = subprocess.Popen(
        [sys.executable, "-m", "petportrait.cli", "keys", "rotate", "--batch-size", "20"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        if "re-wrapped" in line:
            break
    process.send_signal(signal.SIGKILL)  # midway: a batch committed, most not
    process.wait(timeout=30)
    done = under(services, NEW)
    assert 0 < done < 10_000

    for name in ("KEY_ENCRYPTION_KEY", "PREVIOUS_KEY_ENCRYPTION_KEY", "SECRET_KEY"):
        os.environ[f"PETPORTRAIT__SECURITY__{name}"] = env[f"PETPORTRAIT__SECURITY__{name}"]
    try:
        get_settings.cache_clear()
        result = CliRunner().invoke(app, ["keys", "rotate", "--batch-size", "5000"])
    finally:
        for name in ("KEY_ENCRYPTION_KEY", "PREVIOUS_KEY_ENCRYPTION_KEY", "SECRET_KEY"):
            os.environ.pop(f"PETPORTRAIT__SECURITY__{name}")
    assert result.exit_code == 0, result.output
    assert f"re-wrapped {10_000 - done} data keys, 0 left" in result.output
    assert under(services, NEW) == 10_000 and under(services, OLD) == 0
    services.engine.dispose()


def test_a_database_from_before_check_values_knows_its_key_by_the_wrapped_keys(tmp_path: Path) -> None:
    from petportrait.db import make_engine
    from petportrait.migrate import upgrade

    settings = keyed_settings(tmp_path, OLD)
    engine = make_engine(settings.database_url)
    if engine.dialect.name == "postgresql":
        pytest.skip("a fresh database at an old revision is made on SQLite")
    upgrade(engine, "0370")
    key = f"photos/{OWNER}/{'b' * 32}/x.jpg"
    row = {"storage_key": key, "owner_id": OWNER, "wrapped_key": wrap_key(OLD, b"d" * 32, key)}
    with engine.begin() as conn:  # a data key of the time: no kek_id column, no check value
        conn.execute(DataKey.__table__.insert(), [{**row, "created_at": utcnow()}])  # type: ignore[attr-defined]
    upgrade(engine)
    engine.dispose()
    with pytest.raises(KekMismatch):  # a start with another key is refused ...
        start(tmp_path, NEW)
    services = start(tmp_path, OLD)  # ... the right one is recorded by its check value
    with services.session_factory() as session:
        row = session.scalars(select(KekCheck)).one()
    assert row.kek_id == kek_id(OLD).hex() and len(row.check_value) == 64
    assert under(services, OLD) == 1  # the migration named each data key's KEK
    services.engine.dispose()
