"""Skips that may hide a failure are not allowed where the run must be complete (`--strict-skips`, set by
`make test` and CI): missing test data, Chromium, PostgreSQL or Redis then fail the session. A skip is allowed
only when its reason matches one of the named entries below; the session's summary names what was allowed."""

from __future__ import annotations

import re

import pytest

# name -> the skip reasons it allows. Keep this short: each entry is a promise that the skip hides nothing.
ALLOWED_SKIPS: dict[str, re.Pattern[str]] = {
    # tests/ml/test_models.py: what a CPU-only machine does; on a CUDA machine the CUDA tests run instead
    "cuda-machine": re.compile(r"this machine has CUDA"),
    # tests/pets/test_imaging.py: a Pillow built without an encoder cannot make the hostile file at all
    "pillow-encoder": re.compile(r"this Pillow cannot write (JPEG2000|AVIF)"),
    # tests that need a PostgreSQL server of their own: they run in CI's PostgreSQL leg
    "postgres-leg": re.compile(r"needs PostgreSQL|the skew needs PostgreSQL|autovacuum is PostgreSQL's"),
    # tests of a database at an old revision, made fresh on SQLite: they run in the SQLite leg
    "sqlite-leg": re.compile(r"at an old revision is made (fresh )?on SQLite"),
    # tests/ops/test_container.py builds an OCI image (minutes): PETPORTRAIT_CONTAINER_TESTS=1 runs it
    "container-opt-in": re.compile(r"PETPORTRAIT_CONTAINER_TESTS"),
}

_SKIPS: list[tuple[str, str]] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--strict-skips",
        action="store_true",
        default=False,
        help="fail the session if a test skipped for a reason outside tests/skip_guard.py's ALLOWED_SKIPS",
    )


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def allowed_as(reason: str) -> str | None:
    """The name of the allow-list entry that allows this skip reason, or None."""
    return next((name for name, pattern in ALLOWED_SKIPS.items() if pattern.search(reason)), None)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _SKIPS.append((report.nodeid, _reason(report)))


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:
        _SKIPS.append((report.nodeid, _reason(report)))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not session.config.getoption("--strict-skips"):
        return
    if any(allowed_as(reason) is None for _, reason in _SKIPS) and exitstatus in (
        pytest.ExitCode.OK,
        pytest.ExitCode.NO_TESTS_COLLECTED,
    ):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if not config.getoption("--strict-skips") or not _SKIPS:
        return
    refused = [(nodeid, reason) for nodeid, reason in _SKIPS if allowed_as(reason) is None]
    allowed: dict[str, int] = {}
    for _, reason in _SKIPS:
        name = allowed_as(reason)
        if name is not None:
            allowed[name] = allowed.get(name, 0) + 1
    if allowed:
        terminalreporter.write_line(
            "allowed skips: " + ", ".join(f"{name} ({count})" for name, count in sorted(allowed.items()))
        )
    if refused:
        terminalreporter.write_sep("=", f"{len(refused)} skips not allowed (--strict-skips)", red=True)
        for nodeid, reason in refused[:50]:
            terminalreporter.write_line(f"{nodeid}: {reason}", red=True)
