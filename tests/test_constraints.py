"""constraints.txt pins everything pyproject.toml asks for (make lock refreshes it; make installs with -c)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
TORCH = "2.13.0"


def pins(text: str | None = None) -> dict[str, Version]:
    """name -> pinned version, from `name==version` lines; anything looser fails here."""
    text = (ROOT / "constraints.txt").read_text() if text is None else text
    found: dict[str, Version] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", (
            f"constraints.txt line {number} does not pin one version: {raw!r}"
        )
        assert not requirement.extras, f"constraints.txt line {number} has extras (use --strip-extras)"
        found[canonicalize_name(requirement.name)] = Version(specifiers[0].version)
    return found


def wanted(text: str | None = None) -> list[tuple[str, Requirement]]:
    """Every requirement of pyproject.toml: the runtime ones and those of each extra."""
    text = (ROOT / "pyproject.toml").read_text() if text is None else text
    project = tomllib.loads(text)["project"]
    out = [("dependencies", Requirement(r)) for r in project.get("dependencies", [])]
    for extra, requirements in project.get("optional-dependencies", {}).items():
        out += [(f"[{extra}]", Requirement(r)) for r in requirements]
    return out


def problems(pyproject: str | None = None, constraints: str | None = None) -> list[str]:
    """What pyproject.toml asks for that constraints.txt does not pin, or pins outside the range."""
    pinned = pins(constraints)
    found = []
    for where, requirement in wanted(pyproject):
        name = canonicalize_name(requirement.name)
        if name == "petportrait":
            continue
        if name not in pinned:
            found.append(f"{requirement} ({where}) is not pinned")
        elif not requirement.specifier.contains(pinned[name], prereleases=True):
            found.append(f"{requirement} ({where}) but {pinned[name]} is pinned")
    return found


def test_every_requirement_of_pyproject_is_pinned_within_its_range() -> None:
    found = problems()
    assert not found, "constraints.txt does not match pyproject.toml (run make lock): " + "; ".join(found)


def test_the_check_catches_a_missing_or_excluded_pin() -> None:
    pyproject = '[project]\ndependencies = ["fastapi>=0.115", "leftpad>=1"]\n'
    pyproject += '[project.optional-dependencies]\ndev = ["pytest<8"]\n'
    constraints = "fastapi==0.120.0\n    # via petportrait\npytest==8.3.0\n"
    assert problems(pyproject, constraints) == [
        "leftpad>=1 (dependencies) is not pinned",
        "pytest<8 ([dev]) but 8.3.0 is pinned",
    ]


def test_torch_is_pinned_to_the_cpu_build_the_makefile_installs_first() -> None:
    assert pins()[canonicalize_name("torch")] == Version(TORCH)
    makefile = (ROOT / "Makefile").read_text()
    assert f"TORCH := torch=={TORCH}" in makefile
    assert not any(name.startswith("nvidia-") for name in pins()), "a CUDA build of torch was locked"


def test_make_installs_with_the_constraints_and_make_lock_refreshes_them() -> None:
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if "pip install" in line and "-e " in line]
    assert installs and all("-c constraints.txt" in line for line in installs), installs
    lock = makefile.split("\nlock:", 1)[1].split("\n\n", 1)[0]
    assert "pip-compile" in lock and "--all-extras" in lock and "--strip-extras" in lock
    header = (ROOT / "constraints.txt").read_text()
    assert re.search(r"^#\s+make lock$", header, re.MULTILINE), "constraints.txt was not made by make lock"
