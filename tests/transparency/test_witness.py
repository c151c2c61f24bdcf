"""A witness in a process of its own follows the log over HTTP: it cosigns an honest log's checkpoints and
refuses, reports and keeps evidence of a forked one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from petportrait.cli_transparency import FORK_EXIT
from petportrait.db import session_scope
from petportrait.retention import audit, transparency
from petportrait.retention.transparency_models import TlogCosignature
from petportrait.web.app import Services
from tests.live import live_server
from tests.transparency.forge import rewrite_history


def _append(services: Services, count: int) -> None:
    with session_scope(services.session_factory) as session:
        for i in range(count):
            audit.record(session, action="consent.granted", actor_id="u1", owner_id="u1", details={"i": i})
        transparency.sign_checkpoint(session, services.settings)


def _witness(url: str, folder: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "petportrait.cli", "witness", "--log", url, "--once"]
    command += ["--key", str(folder / "witness.key"), "--name", "witness.test"]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, env=os.environ.copy(), check=False
    )


def _cosigned_sizes(services: Services) -> list[int]:
    with services.session_factory() as session:
        return sorted(session.scalars(select(TlogCosignature.tree_size)))


def test_a_witness_cosigns_an_honest_log_and_refuses_a_forked_one(services: Services, tmp_path: Path) -> None:
    _append(services, 5)
    with live_server(services) as url:
        first = _witness(url, tmp_path)
        assert first.returncode == 0, first.stderr
        assert "cosigned" in first.stdout and (tmp_path / "witness.key").stat().st_mode & 0o777 == 0o600
        _append(services, 4)
        second = _witness(url, tmp_path)
        assert second.returncode == 0, second.stderr
        assert _cosigned_sizes(services) == [5, 9]
        with services.session_factory() as session:
            checkpoint = transparency.latest_checkpoint(session)
            assert checkpoint is not None
            assert "\u2014 witness.test " in transparency.cosigned_note(session, checkpoint)

        rewrite_history(services, 2, whole_chain=True)
        _append(services, 3)
        forked = _witness(url, tmp_path)
    assert forked.returncode == FORK_EXIT, forked.stdout + forked.stderr
    assert "FORK" in forked.stderr and "does not extend" in forked.stderr
    assert _cosigned_sizes(services) == [5, 9]  # nothing cosigned for the forked log
    evidence = [json.loads(path.read_text()) for path in tmp_path.glob("fork-*.json")]
    assert len(evidence) == 1
    assert evidence[0]["cosigned"].split("\n")[1] == "9" and evidence[0]["offered"].split("\n")[1] == "12"
