"""A live server for tests that need real HTTP from another thread or process: uvicorn in a thread,
on a free loopback port, serving `create_app(services=...)` (with its embedded consumer when asked); or
`petportrait serve` as a process of its own (`serve_process`)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from petportrait.web.app import Services, create_app


@contextmanager
def live_server(services: Services, *, consumer: bool = False) -> Iterator[str]:
    """Serve the app on 127.0.0.1:<free port> while the block runs; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        create_app(services=services, consumer=consumer),
        log_level="warning",
        lifespan="on",
        timeout_keep_alive=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("the live server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()


@dataclass
class ServeProcess:
    """`petportrait serve` as a process of its own: its base URL, data folder and log."""

    base_url: str
    data_dir: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""


@contextmanager
def serve_process(data_dir: Path, **env: str) -> Iterator[ServeProcess]:
    """Run `petportrait serve` on a free loopback port with SQLite in `data_dir`, its embedded consumer and
    `env` (PETPORTRAIT__... overrides) while the block runs."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    full = {k: v for k, v in os.environ.items() if not k.startswith("PETPORTRAIT__")}
    full.update(
        {
            "PETPORTRAIT__DATA_DIR": str(data_dir),
            "PETPORTRAIT__ENVIRONMENT": "test",
            "PETPORTRAIT__SECURITY__SECRET_KEY": secrets.token_hex(32),
            "PETPORTRAIT__SECURITY__COOKIE_SECURE": "false",
            "PETPORTRAIT__QUEUE__EMBEDDED_CONSUMER": "true",
            "PETPORTRAIT__QUEUE__NAME": f"serve-{secrets.token_hex(4)}",
            "PETPORTRAIT__LIMITS__NAMESPACE": f"serve-{secrets.token_hex(4)}",
            **env,
        }
    )
    log = data_dir / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "petportrait.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=full,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = ServeProcess(f"http://127.0.0.1:{port}", data_dir, log, proc)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(server.base_url + "/healthz", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"petportrait serve did not start:\n{server.log_tail()}")
            time.sleep(0.2)
        yield server
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
