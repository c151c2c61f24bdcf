"""Mutation testing of the policy-critical modules with mutmut; prints the kill rate (make mutate).

Runs in a scratch copy of the checkout (mutmut writes a `mutants/` tree and the copy may narrow the
configuration), with the shared test data named by PETPORTRAIT_TEST_DATA. Each mutant runs against the tests
that reached the mutated function ([tool.mutmut] in pyproject.toml says which modules and which tests).

    python bench/mutate.py                                   # every listed module (slow: tens of minutes)
    python bench/mutate.py --only src/petportrait/retention/policy.py --tests tests/lifecycle/test_policy.py
    python bench/mutate.py --only src/petportrait/pets/service.py --tests tests/pets/test_purpose_limit.py \
        --names "petportrait.pets.service.x_read_photos_for_training*"

Survivors are listed; a survivor named in EXPLAINED is an equivalent mutant (no test can tell it apart) and
is counted apart, with its reason. Exit status 1 when the kill rate is below --target.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "dreambooth-pets"

# mutant name -> why no test can kill it (the mutated code behaves the same)
EXPLAINED: dict[str, str] = {
    "petportrait.retention.policy.x_period__mutmut_2": (
        "`policy_days is None or setting is None` as `and`: every kind in KINDS has both or neither"
    ),
    "petportrait.retention.policy.x_due_at__mutmut_15": (
        "getattr(item, clock) without its None default: the registry refuses a kind's table without its clock"
    ),
    **{
        f"petportrait.pets.service.x_read_photos_for_training__mutmut_{n}": (
            "now=None: live_photos_query then reads the same clock itself"
        )
        for n in (10, 19, 21)
    },
    "petportrait.pets.service.x_read_photos_for_training__mutmut_14": (
        "order_by(None): SQLite answers `id IN (...)` from the primary-key index, in id order anyway "
        "(PostgreSQL need not; the test asserts the order, so the PostgreSQL leg would see it)"
    ),
}


def _copy_checkout(dest: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        src = ROOT / name.decode()
        if src.is_file():
            target = dest / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)


def _narrow(pyproject: Path, only: list[str], tests: list[str]) -> None:
    text = pyproject.read_text()
    config = tomllib.loads(text)["tool"]["mutmut"]
    if only:
        config["only_mutate"] = only
    if tests:
        config["pytest_add_cli_args_test_selection"] = tests
    start = text.index("[tool.mutmut]")
    end = text.find("\n[", start + 1)
    body = "[tool.mutmut]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in config.items())
    pyproject.write_text(text[:start] + body + (text[end:] if end != -1 else ""))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", default=[], help="mutate only these files (of [tool.mutmut])")
    parser.add_argument("--tests", nargs="*", default=[], help="run only these tests for every mutant")
    parser.add_argument("--names", nargs="*", default=[], help="mutant name patterns (mutmut run's)")
    parser.add_argument("--target", type=float, default=95.0, help="the kill rate to reach, in percent")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy (its path is printed)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="petportrait-mutate-"))
    repo = scratch / "repo"
    _copy_checkout(repo)
    if args.only or args.tests:
        _narrow(repo / "pyproject.toml", args.only, args.tests)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PETPORTRAIT__DATABASE__URL")}
    env["PETPORTRAIT_TEST_DATA"] = str(DATA)
    mutmut = [sys.executable, "-m", "mutmut"]
    started = time.monotonic()
    try:
        run = subprocess.run([*mutmut, "run", "--max-children", "1", *args.names], cwd=repo, env=env)
        took = time.monotonic() - started
        listing = subprocess.run(
            [*mutmut, "results", "--all", "true"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    status = dict(re.findall(r"^\s*(\S+): (.+?)\s*$", listing, flags=re.MULTILINE))
    if args.names:
        status = {n: s for n, s in status.items() if any(fnmatch.fnmatch(n, p) for p in args.names)}
    counts = Counter(status.values())
    killed = counts["killed"] + counts["timeout"] + counts["segfault"] + counts["caught by type check"]
    not_killed = sorted((n, s) for n, s in status.items() if s in ("survived", "no tests", "suspicious"))
    explained = [(name, EXPLAINED[name]) for name, _ in not_killed if name in EXPLAINED]
    unexplained = [(name, why) for name, why in not_killed if name not in EXPLAINED]
    considered = sum(counts.values()) - counts["skipped"] - counts["not checked"] - len(explained)
    rate = 100.0 * killed / considered if considered else 0.0
    print(f"mutmut run exit {run.returncode} in {took:.0f} s; {dict(counts)}")
    for name, why in explained:
        print(f"equivalent  {name}: {why}")
    for name, why in unexplained:
        print(f"{why:<11} {name}")
    print(
        f"kill rate: {rate:.1f}% ({killed} killed of {considered}; {len(explained)} explained as equivalent, "
        f"{len(unexplained)} not killed)"
    )
    if args.keep:
        print(f"scratch copy kept: {repo} (mutmut show NAME there)")
    return 0 if rate >= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
