"""A real deployment for flow tests: the API in-process (TestClient) and job workers as separate processes."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from petportrait.db import make_engine
from petportrait.web.app import Services, build_services, create_app
from tests.conftest import forget_recorded_kek, make_settings, pet_photos, sign_up

FAST_ML = {"train_steps": 6, "resolution": 64}


@dataclass
class Stack:
    """One data folder, one database, one queue; workers come and go."""

    data_dir: Path
    env: dict[str, str]
    services: Services
    client: TestClient
    tag: str = field(default_factory=lambda: secrets.token_hex(4))
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def start_worker(self, *, periodic: bool = True, **extra_env: str) -> subprocess.Popen[bytes]:
        """A worker process; periodic=False leaves the reaper and sweeper to others (`--no-periodic`)."""
        log = self.data_dir / f"worker-{len(self.logs)}.log"
        self.logs.append(log)
        env = {**self.env, **extra_env}
        proc = subprocess.Popen(
            [sys.executable, "-m", "petportrait.cli", "worker", *([] if periodic else ["--no-periodic"])],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.workers.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        self.workers.clear()

    def worker_logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in self.logs if p.exists()
        )

    def user(self, email: str) -> dict[str, str]:
        """A new account; the address is made unique per stack, as stacks may share one database."""
        local, _, domain = email.partition("@")
        return sign_up(self.client, f"{local}+{self.tag}@{domain}")

    def pet_with_photos(self, headers: dict[str, str], folder: str = "dog", count: int = 3) -> str:
        pet = self.client.post("/api/v1/pets", json={"name": folder, "species": "dog"}, headers=headers)
        assert pet.status_code == 201, pet.text
        pet_id = str(pet.json()["id"])
        files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in pet_photos(folder)[:count]]
        response = self.client.post(f"/api/v1/pets/{pet_id}/photos", files=files, headers=headers)
        assert response.status_code == 201 and response.json()["stored"] == count, response.text
        return pet_id

    def job(self, headers: dict[str, str], job_id: str) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/jobs/{job_id}", headers=headers)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_job(
        self,
        headers: dict[str, str],
        job_id: str,
        until: Callable[[dict[str, Any]], bool],
        timeout: float = 240,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(headers, job_id)
            if until(job):
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} never reached the condition; last: {job}\n{self.worker_logs()}")

    def wait_end(self, headers: dict[str, str], job_id: str, timeout: float = 240) -> dict[str, Any]:
        return self.wait_job(
            headers, job_id, lambda j: j["state"] in ("succeeded", "failed", "cancelled"), timeout=timeout
        )

    def blob_keys(self, prefix: str = "") -> list[str]:
        return [b.key for b in self.services.blobs.list(prefix)]


def make_stack(root: Path, *, queue_url: str | None, shared_models: Path, **ml: Any) -> Stack:
    """Build a stack in `root`; the preview model is shared between stacks through `shared_models`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "models").symlink_to(shared_models, target_is_directory=True)
    secret = secrets.token_hex(32)
    ml_settings = {**FAST_ML, **ml}
    queue = {
        "url": queue_url,
        "name": f"test-{secrets.token_hex(6)}",
        "embedded_consumer": False,
        "heartbeat_seconds": 0.3,
        "stale_after_seconds": 2.0,
        "max_attempts": 3,
    }
    settings = make_settings(root, queue=queue, ml=ml_settings)
    settings.security.secret_key = secret
    if settings.database_url.startswith("postgresql"):  # a shared database: this stack is a new deployment
        engine = make_engine(settings.database_url)
        forget_recorded_kek(engine)
        engine.dispose()
    services = build_services(settings, migrate=True)
    env = {
        **os.environ,
        "PETPORTRAIT__ENVIRONMENT": "test",
        "PETPORTRAIT__DATA_DIR": str(root),
        "PETPORTRAIT__DATABASE__URL": settings.database_url,
        "PETPORTRAIT__SECURITY__SECRET_KEY": secret,
        "PETPORTRAIT__QUEUE__NAME": queue["name"],
        "PETPORTRAIT__QUEUE__HEARTBEAT_SECONDS": str(queue["heartbeat_seconds"]),
        "PETPORTRAIT__QUEUE__STALE_AFTER_SECONDS": str(queue["stale_after_seconds"]),
        "PETPORTRAIT__ML__TRAIN_STEPS": str(ml_settings["train_steps"]),
        "PETPORTRAIT__ML__RESOLUTION": str(ml_settings["resolution"]),
        "PETPORTRAIT__ML__DEVICE": "cpu",
        "PYTHONUNBUFFERED": "1",
    }
    if queue_url:
        env["PETPORTRAIT__QUEUE__URL"] = queue_url
    else:
        env.pop("PETPORTRAIT__QUEUE__URL", None)
    client = TestClient(create_app(services=services), raise_server_exceptions=False)
    client.__enter__()
    return Stack(data_dir=root, env=env, services=services, client=client)


def close_stack(stack: Stack) -> None:
    stack.stop_all()
    stack.client.__exit__(None, None, None)
    stack.services.queue.flush()
    stack.services.engine.dispose()
