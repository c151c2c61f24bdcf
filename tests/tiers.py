"""Test tiers and time: the `slow` tier (marked here, by file, so that `-m "not slow"` is a quick run) and a
duration report that warns about any test past SLOW_WARN_SECONDS (setup, call and teardown together)."""

from __future__ import annotations

import pytest

SLOW_WARN_SECONDS = 60.0

# Files whose tests start worker processes, train models, drive a browser or fuzz the API: the slow tier.
SLOW_FILES = (
    "tests/e2e/",
    "tests/jobs/test_flows.py",
    "tests/jobs/test_fencing.py",
    "tests/jobs/test_event_streams.py",
    "tests/client/test_portrait_command.py",
    "tests/lifecycle/test_simulation.py",
    "tests/lifecycle/test_retrain_after_sweep.py",
    "tests/notifications/test_flow.py",
    "tests/ml/test_train.py",
    "tests/ml/test_sdxl.py",
    "tests/web/test_fuzz.py",
)

_TOOK: dict[str, float] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(SLOW_FILES):
            item.add_marker(pytest.mark.slow)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if type(report).__name__ == "SubtestReport":  # its time is inside its test's own call report
        return
    _TOOK[report.nodeid] = _TOOK.get(report.nodeid, 0.0) + report.duration


def over_budget() -> list[tuple[str, float]]:
    """The tests that took longer than SLOW_WARN_SECONDS, slowest first."""
    return sorted(((n, s) for n, s in _TOOK.items() if s > SLOW_WARN_SECONDS), key=lambda x: -x[1])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    slow = over_budget()
    if slow:
        terminalreporter.write_sep("=", f"{len(slow)} tests took over {SLOW_WARN_SECONDS:.0f} s", yellow=True)
        for nodeid, seconds in slow:
            terminalreporter.write_line(f"WARNING {seconds:7.1f} s  {nodeid}", yellow=True)
