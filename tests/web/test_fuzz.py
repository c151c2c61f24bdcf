"""The API fuzzed with schemathesis, in-process against the ASGI app, as a signed-up person.

Coverage (boundary and invalid values for every parameter) and fuzzing (random valid and invalid
requests) phases; any 5xx or answer that breaks its documented schema fails the test. Bounded to stay
well under three minutes on a small machine: FUZZ_EXAMPLES cases per operation in the fuzzing phase.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from fastapi.testclient import TestClient
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import response_schema_conformance

from petportrait.web.app import Services, create_app
from tests.conftest import sign_up

FUZZ_EXAMPLES = int(os.environ.get("PETPORTRAIT_FUZZ_EXAMPLES", "8"))
SEEN: Counter[str] = Counter()
CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": 20261210,
        "generation": {"max-examples": FUZZ_EXAMPLES, "database": "none"},
        "phases": {
            "examples": {"enabled": False},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": False},
        },
    }
)


@pytest.fixture
def fuzz_target(services: Services) -> Iterator[tuple[schemathesis.BaseSchema, dict[str, str]]]:
    app = create_app(services=services)
    with TestClient(app) as client:
        auth = sign_up(client, "fuzz@example.com")
        schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app, config=CONFIG)
        yield schema, auth


@pytest.fixture
def api_schema(fuzz_target: tuple[schemathesis.BaseSchema, dict[str, str]]) -> schemathesis.BaseSchema:
    return fuzz_target[0]


@pytest.fixture
def auth(fuzz_target: tuple[schemathesis.BaseSchema, dict[str, str]]) -> dict[str, str]:
    return fuzz_target[1]


@pytest.fixture(autouse=True)
def _nodeid_for_schemathesis(request: pytest.FixtureRequest) -> None:
    # schemathesis' lazy loader renames each sub-test through the private `_nodeid`, which pytest 9
    # no longer has; give it one (it only changes how failures are named in the report).
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


@pytest.fixture(scope="module")
def tally() -> Iterator[Counter[str]]:
    """The cases the fuzz test sent, checked once it is done: it did send some (pytest -s prints them). A
    fixture, not a test after it, so that it holds in any order and alone."""
    SEEN.clear()
    yield SEEN
    print(f"schemathesis: {SEEN['cases']} cases; by status class: {dict(SEEN)}")
    assert SEEN["cases"] > 0 and SEEN["5xx"] == 0


lazy = schemathesis.pytest.from_fixture("api_schema")


@lazy.parametrize()
def test_api_answers_without_server_errors_and_within_its_schema(
    case: schemathesis.Case, auth: dict[str, str], tally: Counter[str]
) -> None:
    SEEN["cases"] += 1
    # Signing out would end the session the rest of the run uses: that one case goes without the token.
    signs_out = case.method.upper() == "DELETE" and case.path == "/api/v1/auth/token"
    headers = {**({} if signs_out else auth), **(case.headers or {})}
    response = case.call_and_validate(
        headers=headers, checks=[not_a_server_error, response_schema_conformance]
    )
    SEEN[f"{response.status_code // 100}xx"] += 1
    SEEN[str(response.status_code)] += 1
