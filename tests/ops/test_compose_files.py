"""deploy/compose*.yaml: secrets only from files, petportrait's containers hardened, start order by health."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SECRET_WORDS = re.compile(r"SECRET|PASSWORD|TOKEN|KEY_ENCRYPTION|ACCESS_KEY|DATABASE__URL", re.IGNORECASE)


def load(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / name).read_text()))


def petportrait_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if "petportrait" in str(s.get("image", ""))}


@pytest.mark.parametrize("name", ["compose.yaml", "compose.single.yaml"])
def test_secrets_come_from_files_and_containers_are_read_only_and_non_root(name: str) -> None:
    compose = load(name)
    services = petportrait_services(compose)
    assert services
    for service_name, service in services.items():
        assert service["read_only"] is True and "/tmp" in service["tmpfs"], service_name
        assert service["cap_drop"] == ["ALL"], service_name
        for key, value in service["environment"].items():
            if SECRET_WORDS.search(key) and not key.endswith("_FILE"):
                pytest.fail(f"{name}: {service_name} sets secret {key} inline ({value!r})")
            if key.endswith("_FILE"):
                secret = Path(value).name
                assert value == f"/run/secrets/{secret}" and secret in service["secrets"], key
    for secret in compose["secrets"].values():
        assert set(secret) == {"file"}, "every secret is a file"
    for service in compose["services"].values():
        for key in service.get("environment") or {}:
            assert not (SECRET_WORDS.search(key) and not key.endswith("_FILE")), key


def test_the_fleet_migrates_first_and_starts_on_healthy_dependencies() -> None:
    compose = load("compose.yaml")
    services = compose["services"]
    assert services["migrate"]["command"] == ["migrate"]
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert services[name]["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert services["api"]["deploy"]["replicas"] == 2
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
    for name in ("postgres", "redis", "s3"):
        assert services[name]["healthcheck"]["test"], name
        assert any(":" in v and not v.startswith("/") for v in services[name]["volumes"]), "named volume"
    assert set(compose["volumes"]) >= {"postgres", "redis", "blobs"}
