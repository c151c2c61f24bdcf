"""The image, built with podman, runs the API and workers against this machine's PostgreSQL and Redis and a
moto S3 server: sign-up, upload, train and render on the preview model; a worker stopped mid-job hands the
job to a second worker; non-root, read-only root file system; the data survives replacing the containers.

Opt-in (it builds the image: minutes on a cold cache): PETPORTRAIT_CONTAINER_TESTS=1, or `-m container`.
Podman here needs runc, host networking and no default ulimits: the test writes a containers.conf of its
own (CONTAINERS_CONF) for its runs only.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer
from sqlalchemy import create_engine, text

from petportrait.rights.provenance import make_development_chain
from tests.conftest import PASSWORD, pet_photos
from tests.jobs.test_queue_contract import REDIS_URL, redis_available

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/petportrait:container-test"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

pytestmark = [
    pytest.mark.container,
    pytest.mark.timeout(3600),  # a cold image build alone takes 6 to 15 minutes on 2 busy cores
    pytest.mark.skipif(
        os.environ.get("PETPORTRAIT_CONTAINER_TESTS") != "1",
        reason="opt-in: PETPORTRAIT_CONTAINER_TESTS=1 (builds the image with podman)",
    ),
]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Podman:
    conf: Path
    names: list[str] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(self.conf)}

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["podman", *args], env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {done.returncode}\n{done.stdout}\n{done.stderr}")
        return done


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    assert shutil.which("podman") and shutil.which("runc"), (
        "podman and runc are needed: apt-get install podman runc"
    )
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits = []\nnetns = "host"\n\n[engine]\nruntime = "runc"\n')
    tool = Podman(conf)
    started = time.monotonic()
    build = subprocess.run(
        ["make", "image", "ENGINE=podman", f"IMAGE={IMAGE}"],
        cwd=ROOT,
        env=tool.env(),
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    print(f"image built in {time.monotonic() - started:.0f} s")
    yield tool
    for name in tool.names:
        tool("rm", "-f", "-t", "0", name, check=False)


@dataclass
class Deployment:
    podman: Podman
    env: dict[str, str]
    secrets_dir: Path
    volume: str
    port: int

    def run(
        self, name: str, *command: str, extra_env: dict[str, str] | None = None, detach: bool = True
    ) -> str:
        full = f"{name}-{uuid.uuid4().hex[:6]}"
        self.podman.names.append(full)
        env_args = [a for k, v in {**self.env, **(extra_env or {})}.items() for a in ("-e", f"{k}={v}")]
        args = [
            "run",
            *(["-d"] if detach else ["--rm"]),
            "--name",
            full,
            "--read-only",
            "--tmpfs",
            "/tmp",
            "--network",
            "host",
            "-v",
            f"{self.secrets_dir}:/run/secrets:ro,Z",
            "-v",
            f"{self.volume}:/var/lib/petportrait",
            *env_args,
            IMAGE,
            *command,
        ]
        self.podman(*args, timeout=600)
        return full


@pytest.fixture(scope="module")
def deployment(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    if not redis_available():
        pytest.fail("Redis is not running on 127.0.0.1:6379 (.ci/run starts it)")
    database = f"container_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3.start()
    host, s3_port = s3.get_host_and_port()
    endpoint = f"http://{host}:{s3_port}"
    bucket = f"container-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    secrets_dir = tmp_path_factory.mktemp("secrets")
    secrets_dir.chmod(0o755)  # the container's user (10001) reads them through the bind mount
    values = {
        "secret_key": secrets.token_urlsafe(48),
        "kek": base64.b64encode(os.urandom(32)).decode(),
        "metrics_token": secrets.token_urlsafe(24),
        "database_url": f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}",
    }
    chain, key, _ca = make_development_chain()
    values.update({"signing_cert": chain.decode(), "signing_key": key.decode()})
    for name, value in values.items():
        (secrets_dir / name).write_text(value)
        (secrets_dir / name).chmod(0o444)  # the container's user is not the file's owner
    port = free_port()
    volume = f"petportrait-test-{uuid.uuid4().hex[:8]}"
    podman("volume", "create", volume)
    env = {
        "PETPORTRAIT__ENVIRONMENT": "production",
        "PETPORTRAIT__BASE_URL": f"http://127.0.0.1:{port}",
        "PETPORTRAIT__PORT": str(port),
        "PETPORTRAIT__SECURITY__ALLOWED_HOSTS": '["127.0.0.1"]',
        "PETPORTRAIT__SECURITY__COOKIE_SECURE": "false",
        "PETPORTRAIT__SECURITY__SECRET_KEY_FILE": "/run/secrets/secret_key",
        "PETPORTRAIT__SECURITY__KEY_ENCRYPTION_KEY_FILE": "/run/secrets/kek",
        "PETPORTRAIT__SECURITY__METRICS_TOKEN_FILE": "/run/secrets/metrics_token",
        "PETPORTRAIT__DATABASE__URL_FILE": "/run/secrets/database_url",
        "PETPORTRAIT__RIGHTS__SIGNING_CERT": "/run/secrets/signing_cert",
        "PETPORTRAIT__RIGHTS__SIGNING_KEY": "/run/secrets/signing_key",
        "PETPORTRAIT__QUEUE__URL": REDIS_URL,
        "PETPORTRAIT__QUEUE__NAME": f"container-{uuid.uuid4().hex[:8]}",
        "PETPORTRAIT__QUEUE__EMBEDDED_CONSUMER": "false",
        "PETPORTRAIT__QUEUE__HEARTBEAT_SECONDS": "0.5",
        "PETPORTRAIT__QUEUE__STALE_AFTER_SECONDS": "5",
        "PETPORTRAIT__STORAGE__BACKEND": "s3",
        "PETPORTRAIT__STORAGE__S3_BUCKET": bucket,
        "PETPORTRAIT__STORAGE__S3_ENDPOINT_URL": endpoint,
        "PETPORTRAIT__STORAGE__S3_ACCESS_KEY_ID": "testing",
        "PETPORTRAIT__STORAGE__S3_SECRET_ACCESS_KEY": "testing",
        "PETPORTRAIT__ML__DEVICE": "cpu",
        "PETPORTRAIT__ML__RESOLUTION": "64",
        "PETPORTRAIT__LIMITS__NAMESPACE": f"container-{uuid.uuid4().hex[:8]}",
    }
    deployed = Deployment(podman, env, secrets_dir, volume, port)
    try:
        yield deployed
    finally:
        for name in list(podman.names):
            podman("rm", "-f", "-t", "0", name, check=False)
        podman.names.clear()
        podman("volume", "rm", "-f", volume, check=False)
        s3.stop()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def wait_healthy(base: str, timeout: float = 120) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{base}/healthz did not answer 200 in {timeout} s")


def wait_job(client: httpx.Client, job_id: str, done: Any, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if done(job):
            return dict(job)
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not get there: {job}")


def test_the_image_serves_trains_and_renders_as_non_root_on_a_read_only_root(deployment: Deployment) -> None:
    podman = deployment.podman
    podman("run", "--rm", "--read-only", "--tmpfs", "/tmp", IMAGE, "--help")
    migrate = deployment.run("migrate", "migrate", detach=False)
    assert migrate
    api = deployment.run("api", "serve")
    base = f"http://127.0.0.1:{deployment.port}"
    print(f"API healthy {wait_healthy(base):.1f} s after start")

    assert podman("exec", api, "id", "-u").stdout.strip() != "0"
    read_only = podman("exec", api, "touch", "/opt/petportrait/x", check=False)
    assert read_only.returncode != 0 and "Read-only" in read_only.stderr
    logs = podman("logs", api)
    assert '"request_id"' in logs.stdout + logs.stderr  # JSON lines with request ids

    client = httpx.Client(base_url=base, timeout=60)
    email = f"container-{uuid.uuid4().hex[:6]}@example.com"
    assert client.post("/api/v1/accounts", json={"email": email, "password": PASSWORD}).status_code == 202
    signed_in = client.post("/api/v1/auth/token", json={"email": email, "password": PASSWORD})
    assert signed_in.status_code == 200, podman("logs", api).stderr[-3000:]
    token = signed_in.json()["access_token"]
    client.headers["Authorization"] = f"Bearer {token}"
    pet = client.post("/api/v1/pets", json={"name": "Rex", "species": "dog"}).json()
    photos = pet_photos("dog")[:4]
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
    assert client.post(f"/api/v1/pets/{pet['id']}/photos", files=files).status_code == 201

    # a worker slow enough to be stopped mid-job, then one that finishes it
    slow = deployment.run("worker-1", "worker", extra_env={"PETPORTRAIT__ML__TRAIN_STEPS": "400"})
    trained = client.post(f"/api/v1/pets/{pet['id']}/models").json()
    job_id, model_id = trained["job"]["id"], trained["model"]["id"]
    wait_job(client, job_id, lambda j: j["state"] == "running" and j["progress"]["step"] > 0, timeout=240)
    podman("kill", "--signal", "TERM", slow)
    time.sleep(0.5)
    podman("kill", "--signal", "TERM", slow)  # the second SIGTERM hands the job back at once
    assert podman("wait", slow, timeout=120).stdout.strip() == "0"
    handed = client.get(f"/api/v1/jobs/{job_id}").json()
    assert handed["state"] == "queued", handed
    deployment.run("worker-2", "worker", extra_env={"PETPORTRAIT__ML__TRAIN_STEPS": "6"})
    job = wait_job(client, job_id, lambda j: j["state"] in ("succeeded", "failed", "cancelled"))
    assert job["state"] == "succeeded", job

    rendered = client.post(
        f"/api/v1/models/{model_id}/renders",
        json={"style": "oil_painting", "count": 1, "steps": 2, "seed": 1, "width": 64, "height": 64},
    ).json()
    job = wait_job(
        client, rendered["job"]["id"], lambda j: j["state"] in ("succeeded", "failed", "cancelled")
    )
    assert job["state"] == "succeeded", job
    render_id = rendered["renders"][0]["id"]
    first = client.get(f"/api/v1/renders/{render_id}/content")
    assert first.status_code == 200 and first.content

    # replace the API container: the data (database, bucket, volume) is still there
    podman("stop", "-t", "30", api)
    api2 = deployment.run("api-2", "serve")
    wait_healthy(base)
    again = client.get(f"/api/v1/renders/{render_id}/content")
    assert again.status_code == 200 and again.content == first.content
    assert podman("exec", api2, "id", "-u").stdout.strip() != "0"
