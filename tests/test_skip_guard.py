"""--strict-skips: a skip outside the named allow-list fails the session; an allowed one is named."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, body: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["tests.skip_guard"]\n')
    (tmp_path / "test_it.py").write_text(textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}",
            "PATH": "/usr/bin:/bin",
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        },
    )


MISSING = """
    import pytest

    def test_passes():
        pass

    def test_needs_data():
        pytest.skip("test data missing: /nowhere")
"""


def test_a_skip_for_missing_data_fails_the_session_with_strict_skips(tmp_path: Path) -> None:
    strict = _run(tmp_path, MISSING, "--strict-skips")
    assert strict.returncode == 1, strict.stdout
    assert "1 skips not allowed" in strict.stdout and "test data missing: /nowhere" in strict.stdout
    relaxed = _run(tmp_path, MISSING)
    assert relaxed.returncode == 0, relaxed.stdout


def test_an_allowed_skip_passes_and_is_named(tmp_path: Path) -> None:
    allowed = _run(
        tmp_path,
        """
        import pytest

        def test_cuda_only():
            pytest.skip("this machine has CUDA")
        """,
        "--strict-skips",
    )
    assert allowed.returncode == 0, allowed.stdout
    assert "allowed skips: cuda-machine (1)" in allowed.stdout
