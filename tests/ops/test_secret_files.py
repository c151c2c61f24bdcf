"""Secrets come from files named by PETPORTRAIT__..._FILE (compose and Kubernetes secrets), never inline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from petportrait.settings import Settings, read_secret_files


def test_a_file_variable_sets_the_setting_it_names_and_a_direct_value_wins(tmp_path: Path) -> None:
    (tmp_path / "secret_key").write_text("s" * 40 + "\n")
    (tmp_path / "token").write_text("scraper-token\n")
    env = {
        "PETPORTRAIT__SECURITY__SECRET_KEY_FILE": str(tmp_path / "secret_key"),
        "PETPORTRAIT__SECURITY__METRICS_TOKEN_FILE": str(tmp_path / "token"),
        "PETPORTRAIT__SECURITY__METRICS_TOKEN": "set-directly",
        "OTHER_FILE": str(tmp_path / "secret_key"),
    }
    assert read_secret_files(env) == ["PETPORTRAIT__SECURITY__SECRET_KEY"]
    assert env["PETPORTRAIT__SECURITY__SECRET_KEY"] == "s" * 40  # the trailing newline is not part of it
    assert env["PETPORTRAIT__SECURITY__METRICS_TOKEN"] == "set-directly"
    assert "OTHER" not in env


def test_a_missing_secret_file_stops_start_up_naming_its_variable(tmp_path: Path) -> None:
    env = {"PETPORTRAIT__SECURITY__KEY_ENCRYPTION_KEY_FILE": str(tmp_path / "absent")}
    with pytest.raises(ValueError, match="PETPORTRAIT__SECURITY__KEY_ENCRYPTION_KEY_FILE"):
        read_secret_files(env)


def test_settings_read_the_value_from_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "secret_key").write_text("k" * 48)
    monkeypatch.setenv("PETPORTRAIT__SECURITY__SECRET_KEY_FILE", str(tmp_path / "secret_key"))
    monkeypatch.setenv("PETPORTRAIT__SECURITY__SECRET_KEY", "")  # empty: the file fills it; undone after
    read_secret_files(os.environ)
    assert Settings(environment="test").security.secret_key == "k" * 48
