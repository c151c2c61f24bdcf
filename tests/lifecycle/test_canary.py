"""Canary values through real processes, looked for the way an auditor would.

One account with unique values (email, password, pet name, prompt, photo file names, webhook secret, a
legal hold's reason) walks the features on a real `petportrait serve` and `petportrait worker`, sending
`Idempotency-Key` wherever the client does, with email going to a loopback SMTP server that refuses the
first delivery once. Then:
(a) after the person deletes photos and portraits and the sweeper runs, no file or table holds a slice of
    those items' bytes;
(b) after erasure and two sweeps, no file under the data folder, no table and neither process's log holds
    any canary value, the photos' sha256 (hex or raw), or a bare hash of the password.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import text

from petportrait.db import make_engine
from tests.canary import database_text, files_bytes, tables_holding
from tests.conftest import TEST_KEK, pet_photos
from tests.jobs.test_skewed_workers import LIBFAKETIME
from tests.notifications.receivers import HookReceiver, SmtpSink, free_port

TAG = secrets.token_hex(4)
EMAIL = f"canary.owner.{TAG}@example.com"
PASSWORD = f"Canary-Password-{TAG}-long"
PET = f"Canarypet{TAG}"
PROMPT = f"a canaryprompt{TAG} portrait of {{pet}}"
HOLD_REASON = f"Canary hold reason {TAG}, 12 Quay Street"
ADMIN_EMAIL = f"canary.admin.{TAG}@example.com"
CANARY_REDIS = "redis://127.0.0.1:6379/9"  # no other test uses database 9


class _RefuseOnce:
    """Refuses the first message with a temporary error that names the recipient, then accepts."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.refused = 0

    @property
    def messages(self) -> Any:
        return self.inner.messages

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if not self.refused:
            self.refused += 1
            return f"451 4.2.0 <{address}>: mailbox busy, try again"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        result: str = await self.inner.handle_DATA(server, session, envelope)
        return result


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.handler = _RefuseOnce(sink.handler)  # type: ignore[assignment]
    sink.controller.handler = sink.handler
    with sink:
        yield sink


@dataclass
class Fleet:
    """What a fleet adds: a database of its own on PostgreSQL, a Redis queue and rate limits, an S3 bucket
    with versioning on moto's server (spoken to over HTTP)."""

    database_url: str
    redis_url: str
    s3: Any  # boto3 client
    bucket: str
    endpoint: str


class Deployment:
    def __init__(self, root: Path, smtp: SmtpSink, fleet: Fleet | None = None) -> None:
        self.root = root
        self.data = root / "var"
        self.logs = root / "logs"
        self.logs.mkdir(parents=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PETPORTRAIT__ENVIRONMENT": "test",
            "PETPORTRAIT__DATA_DIR": str(self.data),
            "PETPORTRAIT__SECURITY__SECRET_KEY": secrets.token_hex(32),
            "PETPORTRAIT__SECURITY__COOKIE_SECURE": "false",
            "PETPORTRAIT__SECURITY__KEY_ENCRYPTION_KEY": TEST_KEK,
            "PETPORTRAIT__QUEUE__NAME": f"canary-{TAG}",
            "PETPORTRAIT__QUEUE__EMBEDDED_CONSUMER": "false",
            "PETPORTRAIT__QUEUE__HEARTBEAT_SECONDS": "0.5",
            "PETPORTRAIT__ML__TRAIN_STEPS": "6",
            "PETPORTRAIT__ML__RESOLUTION": "64",
            "PETPORTRAIT__ML__DEVICE": "cpu",
            "PETPORTRAIT__EMAIL__SMTP_URL": smtp.url,
            "PETPORTRAIT__EMAIL__DELIVER_INTERVAL_SECONDS": "0.5",
            "PETPORTRAIT__WEBHOOKS__ALLOW_PRIVATE_TARGETS": "true",
            "PETPORTRAIT__WEBHOOKS__DELIVER_INTERVAL_SECONDS": "0.5",
            "PETPORTRAIT__RETENTION__SWEEP_INTERVAL_SECONDS": "1",
            "PETPORTRAIT__LIMITS__NAMESPACE": f"canary-{TAG}",
            "PYTHONUNBUFFERED": "1",
        }
        for name in (
            "PETPORTRAIT__QUEUE__URL",
            "PETPORTRAIT__DATABASE__URL",
            "PETPORTRAIT__LIMITS__STORAGE_URL",
        ):
            self.env.pop(name, None)
        self.fleet = fleet
        self.database_url = f"sqlite:///{self.data / 'petportrait.sqlite3'}"
        if fleet is not None:
            self.database_url = fleet.database_url
            self.env.update(
                {
                    "PETPORTRAIT__DATABASE__URL": fleet.database_url,
                    "PETPORTRAIT__QUEUE__URL": fleet.redis_url,
                    "PETPORTRAIT__STORAGE__BACKEND": "s3",
                    "PETPORTRAIT__STORAGE__S3_BUCKET": fleet.bucket,
                    "PETPORTRAIT__STORAGE__S3_ENDPOINT_URL": fleet.endpoint,
                    "PETPORTRAIT__STORAGE__S3_ACCESS_KEY_ID": "testing",
                    "PETPORTRAIT__STORAGE__S3_SECRET_ACCESS_KEY": "testing",
                    "AWS_CONFIG_FILE": str(root / "no-aws-config"),
                    "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
                    "NO_PROXY": "127.0.0.1",
                }
            )
        self.procs: list[subprocess.Popen[bytes]] = []

    def stored(self) -> bytes:
        """Everything at rest: files, every table's values, and on a fleet every Redis key of this
        deployment and every S3 object version."""
        parts = [files_bytes(self.data)]
        engine = make_engine(self.database_url)
        try:
            parts.append(database_text(engine).encode("utf-8", "replace"))
        finally:
            engine.dispose()
        if self.fleet is not None:
            client = redis.Redis.from_url(self.fleet.redis_url)
            for key in client.scan_iter(count=1000):
                name = key.decode("utf-8", "replace")
                if TAG not in name and "huey" not in name:
                    continue
                parts.append(key)
                kind = client.type(key)
                if kind == b"string":
                    parts.append(client.get(key) or b"")
                elif kind == b"list":
                    parts.extend(client.lrange(key, 0, -1))
                elif kind == b"zset":
                    parts.extend(client.zrange(key, 0, -1))
                elif kind == b"hash":
                    parts.extend(b"%s=%s" % kv for kv in client.hgetall(key).items())
            versions = self.fleet.s3.list_object_versions(Bucket=self.fleet.bucket)
            for version in versions.get("Versions", []):
                body = self.fleet.s3.get_object(
                    Bucket=self.fleet.bucket, Key=version["Key"], VersionId=version["VersionId"]
                )["Body"].read()
                parts.append(version["Key"].encode() + b"\n" + body)
        return b"\n".join(parts)

    def cli(self, *args: str, moved: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command; `moved` ("+31d") runs it under libfaketime with the clock moved that far."""
        env = dict(self.env)
        if moved is not None:
            assert LIBFAKETIME is not None, "libfaketime is not installed (make test installs it)"
            env.update({"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": moved})
        return subprocess.run(
            [sys.executable, "-m", "petportrait.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def start(self, name: str, *args: str) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        self.procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "petportrait.cli", *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("*.log")))


def wait_for(what: str, check: Callable[[], Any], deployment: Deployment, timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}\n{deployment.log_text()[-6000:]}")


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


@pytest.fixture(params=["one-machine", "fleet"])
def fleet(request: pytest.FixtureRequest) -> Iterator[Fleet | None]:
    """None for one machine (SQLite, a folder, the SQLite queue); else PostgreSQL, Redis and S3."""
    if request.param == "one-machine":
        yield None
        return
    import boto3
    import psycopg
    from botocore.config import Config
    from moto.server import ThreadedMotoServer

    name = f"canary_{TAG}"
    admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True)
    admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.execute(f'CREATE DATABASE "{name}"')
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(s3={"addressing_style": "path"}),
    )
    # a Redis database of its own, emptied: `retention check` names every key of a deployment's Redis
    redis.Redis.from_url(CANARY_REDIS).flushdb()
    bucket = f"canary-{TAG}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    try:
        yield Fleet(
            database_url=f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
            redis_url=CANARY_REDIS,
            s3=s3,
            bucket=bucket,
            endpoint=endpoint,
        )
    finally:
        server.stop()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_canary_values_are_gone_after_deletion_erasure_and_two_sweeps(
    tmp_path: Path, smtp: SmtpSink, fleet: Fleet | None
) -> None:
    dep = Deployment(tmp_path, smtp, fleet)
    assert dep.cli("migrate").returncode == 0
    made = dep.cli("admin", "create-user", "--email", ADMIN_EMAIL, "--role", "admin", "--password", PASSWORD)
    assert made.returncode == 0, made.stderr
    dep.start("serve", "serve", "--port", str(dep.port))
    dep.start("worker", "worker")
    hooks = HookReceiver()
    hooks.__enter__()
    try:
        _walk(dep, hooks, smtp)
    finally:
        hooks.__exit__(None, None, None)
        dep.stop()


def _walk(dep: Deployment, hooks: HookReceiver, smtp: SmtpSink) -> None:
    http = httpx.Client(base_url=dep.url, timeout=30)
    wait_for("the server", lambda: _up(http), dep, timeout=120)
    api = "/api/v1"
    assert (
        http.post(f"{api}/accounts", json={"email": EMAIL, "password": PASSWORD}, headers=key()).status_code
        == 202
    )
    token = http.post(f"{api}/auth/token", json={"email": EMAIL, "password": PASSWORD}, headers=key())
    assert token.status_code == 200, token.text
    auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
    admin_token = http.post(f"{api}/auth/token", json={"email": ADMIN_EMAIL, "password": PASSWORD}).json()
    admin = {"Authorization": f"Bearer {admin_token['access_token']}"}
    me = http.get(f"{api}/me", headers=auth).json()["id"]

    hook = http.post(
        f"{api}/webhooks",
        json={"url": hooks.url(), "events": ["render.ready", "item.deleted"]},
        headers={**auth, **key()},
    )
    assert hook.status_code == 201, hook.text
    secret = hook.json()["secret"]

    pet = http.post(f"{api}/pets", json={"name": PET, "species": "dog"}, headers={**auth, **key()}).json()
    originals = pet_photos("dog")[:3]
    files = [
        ("files", (f"canaryfile{TAG}-{i}.jpg", p.read_bytes(), "image/jpeg")) for i, p in enumerate(originals)
    ]
    upload = http.post(f"{api}/pets/{pet['id']}/photos", files=files, headers={**auth, **key()})
    assert upload.status_code == 201, upload.text
    photo_ids = [r["photo"]["id"] for r in upload.json()["results"]]

    train = http.post(f"{api}/pets/{pet['id']}/models", headers={**auth, **key()})
    assert train.status_code == 202, train.text
    model_id = train.json()["model"]["id"]
    wait_for(
        "the model",
        lambda: http.get(f"{api}/models/{model_id}", headers=auth).json()["state"] == "ready",
        dep,
    )
    render = http.post(
        f"{api}/models/{model_id}/renders", json={"prompt": PROMPT, "count": 1}, headers={**auth, **key()}
    )
    assert render.status_code == 202, render.text
    render_id = render.json()["renders"][0]["id"]
    wait_for(
        "the render",
        lambda: http.get(f"{api}/renders/{render_id}", headers=auth).json()["state"] == "ready",
        dep,
    )
    image = http.get(f"{api}/renders/{render_id}/content", headers=auth)
    assert image.status_code == 200
    photo_bytes = [http.get(f"{api}/photos/{pid}/content", headers=auth).content for pid in photo_ids]
    export = http.post(f"{api}/me/export", headers={**auth, **key()})
    assert export.status_code == 200 and export.content[:2] == b"PK"
    hold = http.post(
        f"{api}/admin/holds",
        json={
            "scope": "item",
            "kind": "render",
            "item_id": render_id,
            "reason": HOLD_REASON,
            "ends_at": "2099-01-01T00:00:00Z",
        },
        headers=admin,
    )
    if hold.status_code == 422 and hold.json().get("code") == "hold_too_long":
        from datetime import UTC, datetime, timedelta

        ends = (datetime.now(UTC) + timedelta(days=30)).isoformat()
        hold = http.post(
            f"{api}/admin/holds",
            json={
                "scope": "item",
                "kind": "render",
                "item_id": render_id,
                "reason": HOLD_REASON,
                "ends_at": ends,
            },
            headers=admin,
        )
    assert hold.status_code == 201, hold.text
    assert (
        http.post(f"{api}/admin/holds/{hold.json()['id']}/release", json={}, headers=admin).status_code == 200
    )
    wait_for("an email", lambda: len(smtp.messages) >= 2, dep)

    # (a) the person deletes photos and the portrait; the sweeper runs
    for pid in photo_ids:
        assert http.delete(f"{api}/photos/{pid}", headers=auth).status_code == 204
    assert http.delete(f"{api}/renders/{render_id}", headers=auth).status_code == 204
    assert dep.cli("sweep").returncode == 0
    slices = [data[len(data) // 2 : len(data) // 2 + 48] for data in [*photo_bytes, image.content]]
    stored = dep.stored()
    for piece in slices:
        assert piece not in stored, "a slice of a deleted item's bytes is still stored"

    # (c) the clock moved past every deadline (the model's 7 days): the sweep deletes what is left, with the
    # messages that name it, and the check under the same clock finds nothing overdue or left behind
    moved_sweep = dep.cli("sweep", moved="+31d")
    assert moved_sweep.returncode == 0, moved_sweep.stderr[-3000:]
    assert http.get(f"{api}/models/{model_id}", headers=auth).status_code in (404, 410)
    engine = make_engine(dep.database_url)
    with engine.connect() as conn:
        naming = conn.execute(
            text("SELECT count(*) FROM outbox_messages WHERE kind IN ('model_ready', 'render_ready')")
        ).scalar()
    engine.dispose()
    assert naming == 0, "a message names an item past its deadline"
    moved_check = dep.cli("retention", "check", "--json", moved="+31d")
    assert moved_check.returncode == 0, moved_check.stdout[-4000:]

    # (b) erasure, the receipt delivered, two sweeps
    gone = http.request("DELETE", f"{api}/me", headers={**auth, "X-Current-Password": PASSWORD})
    assert gone.status_code == 202, gone.text
    wait_for("the erasure receipt", lambda: any("deleted" in str(m["Subject"]) for m in smtp.messages), dep)
    time.sleep(1.5)  # the receipt's row is forgotten by the next delivery pass
    for _ in range(2):
        assert dep.cli("sweep").returncode == 0
    dep.stop()

    canaries = [EMAIL, PASSWORD, PET, f"canaryprompt{TAG}", f"canaryfile{TAG}", secret, HOLD_REASON]
    canaries += [hashlib.sha256(p.read_bytes()).hexdigest() for p in originals]
    canaries += [hashlib.sha256(PASSWORD.encode()).hexdigest(), hashlib.md5(PASSWORD.encode()).hexdigest()]
    raw_hashes = [hashlib.sha256(p.read_bytes()).digest() for p in originals]
    engine = make_engine(dep.database_url)
    tables = database_text(engine)
    engine.dispose()
    everything = dep.stored()  # on a fleet: Redis keys and every S3 version too
    logs = dep.log_text()
    found: dict[str, list[str]] = {}
    for canary in canaries:
        sources = (("tables", tables), ("logs", logs), ("stored", everything.decode("latin-1")))
        for where, haystack in sources:
            if canary.lower() in haystack.lower():
                found.setdefault(canary, []).append(where)
        if canary.lower() in tables.lower():
            engine = make_engine(dep.database_url)
            found[canary].append(f"columns: {tables_holding(engine, canary)}")
            engine.dispose()
        holders = [
            str(p.relative_to(dep.data))
            for p in dep.data.rglob("*")
            if p.is_file() and canary.lower().encode() in p.read_bytes().lower()
        ]
        if holders:
            found.setdefault(canary, []).append(f"files: {holders}")
    for digest in raw_hashes:
        if digest in everything:
            found.setdefault(digest.hex(), []).append("files (raw sha256)")
    assert found == {}, found
    check = dep.cli("retention", "check", "--json")
    assert check.returncode == 0, check.stdout[-4000:]
    _ = me


def _up(http: httpx.Client) -> bool:
    try:
        return http.get("/healthz").status_code == 200
    except httpx.HTTPError:
        return False
