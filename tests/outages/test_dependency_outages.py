"""Dependencies come and go (issue 26): with a loopback proxy cut between the API and PostgreSQL, Redis or
S3, calls that need it answer 503 problem+json with Retry-After and a stable code, /healthz names what is
down, and everything works again once the proxy is restored, without a restart; the client waits it out."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from petportrait.client import Client
from petportrait.pets.models import Photo
from petportrait.web.app import Services, build_services, create_app
from tests.conftest import make_settings, pet_photos, sign_up
from tests.live import live_server
from tests.outages.proxy import TcpProxy


@pytest.fixture
def proxies() -> Iterator[list[TcpProxy]]:
    made: list[TcpProxy] = []
    yield made
    for proxy in made:
        proxy.close()


@pytest.fixture
def s3_behind_proxy(
    tmp_path: Path, moto_endpoint: str, proxies: list[TcpProxy]
) -> Iterator[tuple[Services, TcpProxy]]:
    """Services on SQLite whose blob store is a new bucket of moto's S3 server, reached through a proxy."""
    proxy, endpoint = TcpProxy.in_front_of(moto_endpoint)
    proxies.append(proxy)
    bucket = f"outage-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3", endpoint_url=moto_endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)  # fmt: skip
    storage = {
        "backend": "s3",
        "s3_bucket": bucket,
        "s3_endpoint_url": endpoint,
        "s3_access_key_id": "testing",
        "s3_secret_access_key": "testing",
    }
    services = build_services(make_settings(tmp_path, storage=storage), migrate=True)
    yield services, proxy
    services.engine.dispose()


def photo_files(count: int = 2) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in pet_photos("dog")[:count]]


def assert_unavailable(response: object, code: str) -> None:
    assert response.status_code == 503, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"].startswith("application/problem+json")  # type: ignore[attr-defined]
    assert response.json()["code"] == code  # type: ignore[attr-defined]
    assert int(response.headers["retry-after"]) > 0  # type: ignore[attr-defined]


def test_storage_cut_answers_503_storage_unavailable_then_uploads_work_again(
    s3_behind_proxy: tuple[Services, TcpProxy],
) -> None:
    services, proxy = s3_behind_proxy
    with TestClient(create_app(services=services), raise_server_exceptions=False) as client:
        alice = sign_up(client, "outage-s3@example.com")
        pet = client.post("/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers=alice).json()
        proxy.cut()
        response = client.post(f"/api/v1/pets/{pet['id']}/photos", files=photo_files(), headers=alice)
        assert_unavailable(response, "storage_unavailable")
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json()["down"] == ["storage"], health.text
        assert client.get("/api/v1/me", headers=alice).status_code == 200  # what needs no storage works
        with services.session_factory() as session:
            kept = select(func.count()).select_from(Photo).where(Photo.pet_id == pet["id"])
            assert session.scalar(kept) == 0  # nothing half-kept (other tests' rows may share a database)
        proxy.restore()
        assert client.get("/healthz").status_code == 200
        again = client.post(f"/api/v1/pets/{pet['id']}/photos", files=photo_files(), headers=alice)
        assert again.status_code == 201 and again.json()["stored"] == 2, again.text


def test_the_client_waits_out_a_storage_outage_with_its_retries(
    s3_behind_proxy: tuple[Services, TcpProxy],
) -> None:
    services, proxy = s3_behind_proxy
    with live_server(services) as url, Client(url, backoff=0.2, max_backoff=1.0) as client:
        client.sign_up("outage-client@example.com", "a long password here")
        pet = client.create_pet("Rex", species="dog")
        proxy.cut()
        restore = threading.Timer(2.0, proxy.restore)
        restore.start()
        results = client.upload_photos(pet.id, pet_photos("dog")[:2])
        restore.join()
        assert results.stored == 2 and results.rejected == 0


def test_redis_cut_names_the_queue_in_healthz_and_jobs_are_kept(
    tmp_path: Path, proxies: list[TcpProxy]
) -> None:
    proxy, _ = TcpProxy.in_front_of("redis://127.0.0.1:6379/0")
    proxies.append(proxy)
    queue = {"url": f"redis://127.0.0.1:{proxy.port}/0", "name": f"outage-{uuid.uuid4().hex[:8]}"}
    services = build_services(make_settings(tmp_path, queue=queue), migrate=True)
    with TestClient(create_app(services=services), raise_server_exceptions=False) as client:
        alice = sign_up(client, "outage-redis@example.com")
        proxy.cut()
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json()["down"] == ["queue"], health.text
        assert "skew_seconds" in health.json()["clock"]
        assert client.get("/api/v1/me", headers=alice).status_code == 200  # the database still answers
        signin = client.post(
            "/api/v1/auth/token", json={"email": "outage-redis@example.com", "password": "x" * 20}
        )  # the sign-in limits count in the same Redis
        assert signin.status_code == 503 and "retry-after" in signin.headers, signin.text
        proxy.restore()
        assert client.get("/healthz").status_code == 200
        proxy.hang()  # a Redis that accepts and never answers: an error within the socket timeout
        started = time.monotonic()
        hung = client.get("/healthz")
        assert hung.status_code == 503 and hung.json()["down"] == ["queue"], hung.text
        assert time.monotonic() - started < 15
        proxy.restore()
        assert client.get("/healthz").status_code == 200
    services.queue.flush()
    services.engine.dispose()


def test_database_cut_answers_503_database_unavailable_then_works_again(
    tmp_path: Path, proxies: list[TcpProxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = make_settings(tmp_path).database_url
    if not url.startswith("postgresql"):
        pytest.skip("the database outage needs PostgreSQL (PETPORTRAIT__DATABASE__URL)")
    proxy, proxied = TcpProxy.in_front_of(url)
    proxies.append(proxy)
    services = build_services(make_settings(tmp_path, database={"url": proxied}), migrate=True)
    with TestClient(create_app(services=services), raise_server_exceptions=False) as client:
        alice = sign_up(client, f"outage-db-{uuid.uuid4().hex[:6]}@example.com")
        assert client.get("/api/v1/me", headers=alice).status_code == 200
        proxy.cut()
        assert_unavailable(client.get("/api/v1/me", headers=alice), "database_unavailable")
        assert_unavailable(
            client.post("/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers=alice),
            "database_unavailable",
        )
        health = client.get("/healthz")
        assert health.status_code == 503 and "database" in health.json()["down"], health.text
        proxy.restore()
        assert client.get("/api/v1/me", headers=alice).status_code == 200
        assert (
            client.post("/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers=alice).status_code
            == 201
        )
        assert client.get("/healthz").status_code == 200
    services.engine.dispose()
