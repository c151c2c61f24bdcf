"""Browser tests: `petportrait serve` as a subprocess on a free loopback port, driven by Debian's Chromium.

The server runs with the preview model (train_steps 6, resolution 64) and its embedded job consumer, on a
fresh data folder; PETPORTRAIT__DATABASE__URL passes through from the environment, so CI also runs these
on PostgreSQL. Screenshots of each main page are saved under artifacts/screenshots/.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CLI = [sys.executable, "-m", "petportrait.cli"]
PASSWORD = "correct horse battery staple"
RUN = secrets.token_hex(3)  # a PostgreSQL database may hold the accounts of an earlier run
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

try:
    from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    pytest.skip("playwright is not installed", allow_module_level=True)


@dataclass
class Server:
    base_url: str
    data_dir: Path
    env: dict[str, str]
    log: Path

    def url(self, path: str) -> str:
        return self.base_url + path

    def create_user(self, email: str, role: str) -> None:
        """An account with a staff role, made with the command line as an operator would."""
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "petportrait.cli",
                "admin",
                "create-user",
                "--email",
                email,
                "--role",
                role,
                "--password",
                PASSWORD,
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""


def address(name: str) -> str:
    """An email address of this run."""
    return f"{name}-{RUN}@example.com"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_env(data_dir: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PETPORTRAIT__") or key == "PETPORTRAIT__DATABASE__URL"
    }
    env.update(
        {
            "PETPORTRAIT__DATA_DIR": str(data_dir),
            "PETPORTRAIT__ENVIRONMENT": "test",
            "PETPORTRAIT__SECURITY__SECRET_KEY": secrets.token_hex(32),
            "PETPORTRAIT__SECURITY__COOKIE_SECURE": "false",
            "PETPORTRAIT__ML__TRAIN_STEPS": "6",
            "PETPORTRAIT__ML__RESOLUTION": "64",
            "PETPORTRAIT__ML__DEVICE": "cpu",
            "PETPORTRAIT__QUEUE__EMBEDDED_CONSUMER": "true",
            "PETPORTRAIT__WEBHOOKS__ALLOW_PRIVATE_TARGETS": "true",
            "PETPORTRAIT__QUEUE__NAME": f"e2e-{secrets.token_hex(4)}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _need_chromium() -> None:
    """The browser tests fail, not skip, without Chromium: a skipped suite would pass unnoticed."""
    if not CHROMIUM.exists():
        pytest.fail(f"Debian's Chromium is not installed at {CHROMIUM}: run `make browser` (make test does)")


@pytest.fixture(scope="package")  # gone before other packages run: its consumer shares the database
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    _need_chromium()
    data_dir = tmp_path_factory.mktemp("e2e-var")
    env = _server_env(data_dir)
    migrate = subprocess.run(
        [*CLI, "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr
    port = _free_port()
    log = data_dir / "serve.log"
    proc = subprocess.Popen(
        [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    srv = Server(base_url=base, data_dir=data_dir, env=env, log=log)
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"petportrait serve did not start:\n{srv.log_tail()}")
        time.sleep(0.3)
    yield srv
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    _need_chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    ctx.set_default_timeout(20_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def shoot(page: Page, name: str, *, phone: bool = False) -> Path:
    """Save a full-page screenshot as a test artefact (and, with `phone`, one at a phone's width too)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if phone:
        size = page.viewport_size or DESKTOP
        page.set_viewport_size(PHONE)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-phone.png"), full_page=True)
        page.set_viewport_size(size)
    return path


AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def axe_violations(page: Page) -> list[str]:
    """The WCAG A/AA violations axe-core finds on the page as it is now, one line each."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": AXE_TAGS}})
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
    ]


def journey_state(page: Page, name: str) -> None:
    """One state of a journey: axe-core finds no violation at a desktop's size nor at a phone's, and both
    are saved as screenshots (`name.png`, `name-phone.png`)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size or DESKTOP
    for viewport, suffix in ((DESKTOP, ""), (PHONE, "-phone")):
        page.set_viewport_size(viewport)
        problems = axe_violations(page)
        assert not problems, f"{name}{suffix} at {page.url}: " + "\n".join(problems)
        page.screenshot(path=str(SCREENSHOTS / f"{name}{suffix}.png"), full_page=True)
    page.set_viewport_size(size)


def sign_up(page: Page, server: Server, email: str) -> None:
    page.goto(server.url("/signup"))
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password (at least 10 characters)").fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    page.get_by_role("button", name="Create my account").click()
    page.get_by_text("Check your email").wait_for()
    sign_in(page, server, email)
    page.wait_for_url("**/pets")


def sign_in(page: Page, server: Server, email: str) -> None:
    page.goto(server.url("/signin"))
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def drop_files(page: Page, selector: str, files: list[tuple[str, str, bytes]]) -> None:
    """Drop files onto an element the way a person drags them from their desktop."""
    import base64

    payload = [{"name": n, "type": t, "data": base64.b64encode(b).decode()} for n, t, b in files]
    transfer = page.evaluate_handle(
        """(files) => {
            const dt = new DataTransfer();
            for (const f of files) {
                const bytes = Uint8Array.from(atob(f.data), c => c.charCodeAt(0));
                dt.items.add(new File([bytes], f.name, {type: f.type}));
            }
            return dt;
        }""",
        payload,
    )
    page.dispatch_event(selector, "dragenter", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})
