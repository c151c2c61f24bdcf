"""Event streams against a live uvicorn: `/healthz` and `/api/v1/me` latency while N job streams are open.

Each stream is a thread with its own HTTP connection to `GET /api/v1/jobs/{id}/events` of a queued job
(no worker runs, so the jobs never end): the attack of issue 13, finding 1. The accounts are spread so
that none exceeds its quota of open streams; the streams end by themselves after `--stream-seconds`
(the maximum duration), so the run is bounded in count and in time.

    .venv/bin/python bench/streams.py [--streams 100] [--jobs 25] [--probes 20] [--stream-seconds 20]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from petportrait.accounts import service as accounts_service
from petportrait.accounts.models import User
from petportrait.clock import utcnow
from petportrait.jobs import service as jobs_service
from petportrait.portraits.models import JobKind
from petportrait.settings import Settings
from petportrait.web.app import Services, build_services, create_app

_HASH = accounts_service.hash_password("benchmark password")


@contextlib.contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """Serve the app with uvicorn on a free loopback port in a thread; yields its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@dataclass
class Account:
    user_id: str
    token_id: str
    headers: dict[str, str]
    job_ids: list[str] = field(default_factory=list)


def make_accounts(services: Services, *, accounts: int, jobs_each: int, tag: str = "") -> list[Account]:
    """Accounts with a token and queued jobs each, written straight to the database (set-up, not attack)."""
    out = []
    with services.session_factory() as session:
        for n in range(accounts):
            user = User(
                email=f"streams-{tag}{n}@example.com", password_hash=_HASH, role="user", created_at=utcnow()
            )
            session.add(user)
            session.flush()
            secret, token = accounts_service.issue_token(
                session, user=user, kind="api", name="bench", lifetime=timedelta(days=1)
            )
            account = Account(user.id, token.id, {"Authorization": f"Bearer {secret}"})
            for _ in range(jobs_each):
                job = jobs_service.create_job(
                    session,
                    kind=JobKind.TRAIN,
                    owner_id=user.id,
                    target_id=secrets.token_hex(16),
                    max_attempts=1,
                )
                account.job_ids.append(job.id)
            out.append(account)
        session.commit()
    return out


@dataclass
class Stream:
    """One open stream in its own thread: its status, the events it saw, and when it ended."""

    url: str
    headers: dict[str, str]
    status: int | None = None
    events: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    opened: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> Stream:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(60.0)) as client,
                client.stream("GET", self.url, headers=self.headers) as response,
            ):
                self.status = response.status_code
                self.opened.set()
                name = None
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        name = line.removeprefix("event: ")
                    elif line.startswith("data: ") and name:
                        self.events.append((name, json.loads(line.removeprefix("data: "))))
                        name = None
        except httpx.HTTPError:
            pass
        finally:
            self.opened.set()
            self.ended.set()

    def names(self) -> list[str]:
        return [name for name, _ in self.events]


def open_streams(base: str, accounts: list[Account], *, streams: int, per_account: int) -> list[Stream]:
    """Open `streams` streams, `per_account` per account, spread over the accounts' jobs."""
    out: list[Stream] = []
    for account in accounts:
        for n in range(per_account):
            if len(out) == streams:
                return out
            job_id = account.job_ids[n % len(account.job_ids)]
            out.append(Stream(f"{base}/api/v1/jobs/{job_id}/events", account.headers).start())
    return out


def probe(base: str, headers: dict[str, str], *, count: int) -> dict[str, list[float]]:
    """Latency in seconds of `count` sequential GET /healthz and GET /api/v1/me."""
    got: dict[str, list[float]] = {"/healthz": [], "/api/v1/me": []}
    with httpx.Client(timeout=httpx.Timeout(60.0)) as client:
        for _ in range(count):
            for path in got:
                start = time.perf_counter()
                response = client.get(f"{base}{path}", headers=headers)
                got[path].append(time.perf_counter() - start)
                assert response.status_code == 200, response.text
    return got


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms"


def run(*, streams: int, jobs: int, probes: int, stream_seconds: float) -> dict[str, object]:
    """One measured run on a fresh SQLite data folder; returns the figures."""
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        settings = Settings(
            environment="test",
            data_dir=Path(tmp),
            database={"url": None},  # type: ignore[arg-type]
            security={"secret_key": secrets.token_hex(32)},  # type: ignore[arg-type]
            queue={"embedded_consumer": False},  # type: ignore[arg-type]
            quotas={"event_stream_max_seconds": stream_seconds},  # type: ignore[arg-type]
        )
        services = build_services(settings, migrate=True)
        quotas = getattr(settings, "quotas", None)  # absent before issue 13: 4 a account, to compare
        per_account = quotas.event_streams_per_account if quotas is not None else 4
        n_accounts = max(jobs, -(-streams // per_account))
        accounts = make_accounts(services, accounts=n_accounts + 1, jobs_each=1)
        prober, accounts = accounts[-1], accounts[:-1]
        with live_server(create_app(services=services)) as base:
            idle = probe(base, prober.headers, count=probes)
            opened = open_streams(base, accounts, streams=streams, per_account=per_account)
            for stream in opened:
                stream.opened.wait(30)
            statuses = [s.status for s in opened]
            busy = probe(base, prober.headers, count=probes)
            deadline = time.monotonic() + stream_seconds + 15  # bounded, whatever the server does
            for stream in opened:
                stream.ended.wait(max(0.0, deadline - time.monotonic()))
        services.engine.dispose()
    return {
        "streams": streams,
        "ended": sum(1 for s in opened if s.ended.is_set()),
        "open_ok": sum(1 for s in statuses if s == 200),
        "idle": idle,
        "busy": busy,
        "ended_with_reconnect": sum(1 for s in opened if s.names()[-1:] == ["reconnect"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=25)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--stream-seconds", type=float, default=20.0)
    args = parser.parse_args()
    if args.streams > 400:
        parser.error("at most 400 streams (one thread each)")
    figures = run(
        streams=args.streams, jobs=args.jobs, probes=args.probes, stream_seconds=args.stream_seconds
    )
    print(f"{figures['open_ok']}/{figures['streams']} streams open (200)")
    for path in ("/healthz", "/api/v1/me"):
        idle = figures["idle"][path]  # type: ignore[index]
        busy = figures["busy"][path]  # type: ignore[index]
        print(f"{path:12s} idle: {summary(idle)}   with {args.streams} streams: {summary(busy)}")
    print(
        f"{figures['ended_with_reconnect']} streams ended with a `reconnect` event at the maximum duration "
        f"({figures['ended']} ended at all within it plus 15 s)"
    )


if __name__ == "__main__":
    main()
