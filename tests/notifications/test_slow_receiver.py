"""A webhook receiver that drips one byte every 4 s, against `petportrait serve` as a real process on SQLite:
nobody else waits for it, and every periodic task keeps its own schedule."""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import PASSWORD
from tests.live import serve_process
from tests.notifications.receivers import DripReceiver, SmtpSink


def signed_in(client: httpx.Client, smtp: SmtpSink, email: str) -> dict[str, str]:
    """Sign up, follow the verification link that reached the SMTP server, and get a token."""
    assert client.post("/api/v1/accounts", json={"email": email, "password": PASSWORD}).status_code == 202
    deadline = time.monotonic() + 10
    link = None
    while link is None and time.monotonic() < deadline:
        texts = [
            str(part.get_payload(decode=True), "utf-8")
            for m in smtp.messages
            if m["To"] == email
            for part in m.walk()
            if part.get_content_type() == "text/plain"
        ]
        found = [re.search(r"token=(pl_[A-Za-z0-9_-]+)", text) for text in texts]
        link = next((f.group(1) for f in found if f), None)
        time.sleep(0.05)
    assert link is not None, f"no verification link reached {email}"
    assert client.post("/api/v1/accounts/verify", json={"token": link}).status_code == 200
    token = client.post("/api/v1/auth/token", json={"email": email, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def sweeper_last_run(data_dir: Path) -> str | None:
    """When the retention sweeper last ran, as the database has it."""
    with sqlite3.connect(data_dir / "petportrait.sqlite3", timeout=10) as db:
        row = db.execute("select last_run_at from leases where name = 'lifecycle.sweeper'").fetchone()
    return str(row[0]) if row and row[0] else None


def test_a_dripping_receiver_stalls_no_request_no_email_and_no_sweep(tmp_path: Path) -> None:
    with (
        SmtpSink() as smtp,
        DripReceiver(every=4.0) as drip,
        serve_process(
            tmp_path / "var",
            PETPORTRAIT__EMAIL__SMTP_URL=smtp.url,
            PETPORTRAIT__EMAIL__DELIVER_INTERVAL_SECONDS="1",
            PETPORTRAIT__RETENTION__SWEEP_INTERVAL_SECONDS="2",
            PETPORTRAIT__WEBHOOKS__ALLOW_PRIVATE_TARGETS="true",
        ) as server,
        httpx.Client(base_url=server.base_url, timeout=30) as client,
    ):
        alice = signed_in(client, smtp, "alice@example.com")
        made = client.post(
            "/api/v1/webhooks", json={"url": drip.url(), "events": ["model.ready"]}, headers=alice
        )
        assert made.status_code == 201, made.text
        started = time.monotonic()
        for _ in range(3):  # three test events: three calls to the receiver at once
            answer = client.post(f"/api/v1/webhooks/{made.json()['id']}/test", headers=alice)
            assert answer.status_code == 202 and answer.json()["state"] == "pending", answer.text
        assert time.monotonic() - started < 1.0
        while len(drip.accepted) < 3 and time.monotonic() - started < 5:
            time.sleep(0.05)
        assert len(drip.accepted) == 3, server.log_tail()

        # meanwhile another person signs in (a security email is due at once) and adds pets
        bob = signed_in(client, smtp, "bob@example.com")
        signed_at = time.monotonic()
        sweeps = {sweeper_last_run(server.data_dir)}
        slowest = 0.0
        for n in range(12):
            began = time.monotonic()
            assert (
                client.post(
                    "/api/v1/pets", json={"name": f"Rex {n}", "species": "dog"}, headers=bob
                ).status_code
                == 201
            )
            assert client.get("/api/v1/pets", headers=bob).status_code == 200
            slowest = max(slowest, time.monotonic() - began)
            sweeps.add(sweeper_last_run(server.data_dir))
            time.sleep(0.4)
        assert slowest < 1.0, f"a request took {slowest:.2f} s"
        arrivals = [at for at, m in smtp.arrivals() if "new sign-in" in str(m["Subject"])]
        assert len(arrivals) == 2  # alice's and bob's
        assert arrivals[-1] - signed_at < 1 + 2, f"the email took {arrivals[-1] - signed_at:.1f} s"
        assert len(sweeps - {None}) >= 3, f"the sweeper ran at {sorted(s for s in sweeps if s)}"

        # each attempt ends at its total deadline (10 s), though the receiver never stopped sending
        while len(drip.closed) < 3 and time.monotonic() - started < 30:
            time.sleep(0.1)
        assert len(drip.closed) == 3 and max(drip.closed) < 13, drip.closed
        listed = client.get(f"/api/v1/webhooks/{made.json()['id']}/deliveries", headers=alice).json()
        assert {(d["state"], d["last_error"]) for d in listed["items"]} == {
            ("failed", "the receiver did not answer within 10 s in all")
        }, (drip.closed, server.log_tail())


def test_a_fresh_worker_runs_every_periodic_task_at_start_whatever_the_uptime(tmp_path: Path) -> None:
    from petportrait.services import build_registry

    names = ["reaper", *(task.name for task in build_registry().periodic_tasks)]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PETPORTRAIT__")},
        "PETPORTRAIT__DATA_DIR": str(tmp_path / "var"),
        "PETPORTRAIT__ENVIRONMENT": "test",
        "PETPORTRAIT__SECURITY__SECRET_KEY": secrets.token_hex(32),
        "PETPORTRAIT__QUEUE__NAME": "fresh-worker",
        # longer than any machine's uptime: a schedule counted from boot would never run it
        "PETPORTRAIT__EMAIL__REMINDER_INTERVAL_SECONDS": "1e12",
    }
    log = tmp_path / "worker.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "petportrait.cli", "worker"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        missing = names
        while missing and time.monotonic() < deadline and proc.poll() is None:
            text = log.read_text(errors="replace")
            missing = [n for n in names if f"periodic task {n}: first run done" not in text]
            time.sleep(0.2)
        assert not missing, f"never ran: {missing}\n{log.read_text(errors='replace')[-3000:]}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
