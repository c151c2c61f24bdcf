"""The Prometheus alert rules: promtool checks them and runs their unit tests, and each series they read
is one that petportrait serves at /metrics (or that deploy/retention-check.sh writes).

promtool comes from Debian's `prometheus` package (`make test` and .ci/run install it); without it this
test fails rather than skips, so CI cannot pass without running the rules' own tests.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml
from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "petportrait.json"
WRITTEN_BY_THE_CHECK_SCRIPT = {
    "petportrait_retention_check_ok",
    "petportrait_retention_check_last_run_timestamp_seconds",
}


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: apt-get install prometheus (make test does)"
    return path


def test_promtool_checks_the_rules_and_their_unit_tests_pass() -> None:
    check = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        [promtool(), "test", "rules", "alerts.test.yml"],
        cwd=RULES.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert test.returncode == 0, test.stdout + test.stderr
    assert "SUCCESS" in test.stdout


def _series(expr: str) -> set[str]:
    return {
        re.sub(r"_(bucket|count|sum)$", "", name) for name in re.findall(r"\bpetportrait_[a-z_]+\b", expr)
    }


def test_every_series_the_rules_and_the_dashboard_read_is_served_at_metrics(client: TestClient) -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    names = {name for group in groups for rule in group["rules"] for name in _series(rule["expr"])}
    panels = json.loads(DASHBOARD.read_text())["panels"]
    names |= {
        name for panel in panels for target in panel.get("targets", []) for name in _series(target["expr"])
    }
    assert len(names) > 10, "the rules and the dashboard read petportrait's series"
    client.get("/api/v1/no-such-route")  # one answered request, so that the request counter has a sample
    exposed = client.get("/metrics").text
    served = set(re.findall(r"^# TYPE (\S+) ", exposed, flags=re.MULTILINE))
    counters = {f"{name}_total" for name in re.findall(r"^# TYPE (\S+) counter", exposed, flags=re.MULTILINE)}
    missing = names - served - counters - WRITTEN_BY_THE_CHECK_SCRIPT
    assert not missing, f"the rules read series nothing serves: {sorted(missing)}"
