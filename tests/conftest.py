"""Shared fixtures: real SQLite (or the PostgreSQL named by PETPORTRAIT__DATABASE__URL), real blob store."""

from __future__ import annotations

import base64
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from petportrait.clock import Clock, clock
from petportrait.models import metadata
from petportrait.settings import Settings
from petportrait.web.app import Services, build_services, create_app

# --strict-skips: only the named skips pass (make test, CI); the slow tier and the 60 s warning
pytest_plugins = ["tests.skip_guard", "tests.tiers"]

# ../shared of the checkout; PETPORTRAIT_TEST_DATA names it for a copy elsewhere (bench/mutate.py runs one)
DATA = Path(
    os.environ.get("PETPORTRAIT_TEST_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dreambooth-pets"
)
PASSWORD = "correct horse battery staple"


def pet_photos(name: str) -> list[Path]:
    """The real photos of one pet of the shared data set, in name order."""
    folder = DATA / name
    if not folder.is_dir():
        pytest.skip(f"test data missing: {folder}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})


# What production requires besides the secret key: a trusted base URL, the scraper's token, the KEK.
TEST_KEK = base64.b64encode(b"k" * 32).decode()
PRODUCTION_SECURITY = {
    "metrics_token": "scraper-secret-token-7f3a9c1e5b2d8046",
    "key_encryption_key": TEST_KEK,
    "cookie_secure": True,
}


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    """Test settings on a fresh data folder; the database URL may come from the environment. In
    production, whatever production requires and the test does not give is filled in."""
    values: dict[str, object] = {
        "environment": "test",
        "data_dir": data_dir,
        "security": {"secret_key": secrets.token_hex(32), "cookie_secure": False},
        "queue": {"embedded_consumer": False},
        # Rate-limit counts of their own: on Redis they would outlive the test (and a whole run).
        "limits": {"namespace": f"test-{secrets.token_hex(6)}"},
    }
    values.update(overrides)
    if values["environment"] == "production":  # production's required settings, unless a test sets them
        values.setdefault("base_url", "https://portraits.example")
        security = dict(values["security"])  # type: ignore[call-overload]
        security = {**PRODUCTION_SECURITY, **security}
        if "security" not in overrides:  # production refuses insecure cookies
            security["cookie_secure"] = True
        values["security"] = security
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def _postgres_engine() -> Iterator[Engine | None]:
    url = os.environ.get("PETPORTRAIT__DATABASE__URL", "")
    if not url.startswith("postgresql"):
        yield None
        return
    from petportrait.db import make_engine

    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def _forget_recorded_kek(_postgres_engine: Engine | None) -> None:
    """On PostgreSQL every test shares one database, but each test's data folder is a deployment of its
    own with a key-encryption key of its own: forget the KEK an earlier test recorded, or the start-up
    check (retention.kek) would rightly refuse this one's. SQLite databases live in the data folder."""
    if _postgres_engine is not None:
        forget_recorded_kek(_postgres_engine)


def forget_recorded_kek(engine: Engine) -> None:
    """Forget the key-encryption key recorded in a shared PostgreSQL database (a new deployment starts)."""
    with engine.begin() as conn:
        if conn.execute(text("SELECT to_regclass('kek_checks')")).scalar() is not None:
            conn.execute(text("DELETE FROM kek_checks"))


@pytest.fixture(scope="session")
def session_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("var")


@pytest.fixture(scope="session")
def base_services(session_data_dir: Path) -> Iterator[Services]:
    """One migrated database for the session; each test starts from empty tables."""
    settings = make_settings(session_data_dir)
    if settings.database.url and settings.database.url.startswith("postgresql"):
        _reset_postgres(settings.database.url)
    services = build_services(settings, migrate=True)
    yield services
    services.engine.dispose()


def _reset_postgres(url: str) -> None:
    """Start the PostgreSQL leg from an empty schema, whatever an earlier run left."""
    from petportrait.db import make_engine

    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def _empty_tables(services: Services) -> None:
    with services.engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(text(f'DELETE FROM "{table.name}"'))


@pytest.fixture
def services(base_services: Services, tmp_path: Path) -> Iterator[Services]:
    """Services on the session database (emptied) and a blob folder of this test's own."""
    from petportrait.jobs.huey_queue import create_queue
    from petportrait.storage.local import LocalBlobStore

    _empty_tables(base_services)
    settings = base_services.settings.model_copy(update={"data_dir": tmp_path}, deep=True)
    blobs = LocalBlobStore(tmp_path / "blobs")
    yield Services(
        settings=settings,
        engine=base_services.engine,
        session_factory=base_services.session_factory,
        blobs=blobs,
        queue=create_queue(settings),
        registry=base_services.registry,
    )
    _empty_tables(base_services)


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services=services), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def frozen_clock() -> Iterator[Clock]:
    clock.freeze()
    yield clock
    clock.unfreeze()


def verification_link(client: TestClient, email: str, kind: str = "verify_email") -> str:
    """The token of the newest link of this kind emailed to the address (read from the outbox)."""
    from sqlalchemy import select

    from petportrait.notifications.models import OutboxMessage

    services = client.app.state.services  # type: ignore[attr-defined]
    with services.session_factory() as session:
        body = session.scalars(
            select(OutboxMessage.text_body)
            .where(OutboxMessage.to_address == email.strip().lower(), OutboxMessage.kind == kind)
            .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
            .limit(1)
        ).first()
    match = re.search(r"token=(pl_[A-Za-z0-9_-]+)", body or "")
    assert match is not None, f"no {kind} link was emailed to {email}"
    return match.group(1)


def verify_address(client: TestClient, email: str) -> None:
    """Follow the verification link emailed to a new account, as its owner would."""
    answer = client.post("/api/v1/accounts/verify", json={"token": verification_link(client, email)})
    assert answer.status_code == 200, answer.text


def sign_up(client: TestClient, email: str, password: str = PASSWORD) -> dict[str, str]:
    """Create an account and return the headers that authenticate as it."""
    response = client.post("/api/v1/accounts", json={"email": email, "password": password})
    assert response.status_code == 202, response.text
    verify_address(client, email)
    response = client.post("/api/v1/auth/token", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
def alice(client: TestClient) -> dict[str, str]:
    return sign_up(client, "alice@example.com")


@pytest.fixture
def bob(client: TestClient) -> dict[str, str]:
    return sign_up(client, "bob@example.com")
