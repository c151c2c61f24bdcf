"""A full data disk answers 507 problem+json `insufficient_storage` with Retry-After, not a generic 500
(issue 26); the kernel's own ENOSPC, from writing to /dev/full."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from petportrait.storage.local import LocalBlobStore
from petportrait.web.app import Services, create_app
from tests.conftest import pet_photos, sign_up


class FullDiskStore(LocalBlobStore):
    """A local store whose disk is full: every blob write lands on /dev/full."""

    def _temp_file(self, path: Path) -> tuple[int, str]:
        return os.open("/dev/full", os.O_WRONLY), str(path) + ".tmp-full"


def test_an_upload_on_a_full_disk_answers_507_and_keeps_nothing(services: Services, tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    full = replace(services, blobs=FullDiskStore(tmp_path / "full-blobs"))
    with TestClient(create_app(services=full), raise_server_exceptions=False) as client:
        alice = sign_up(client, "full-disk@example.com")
        pet = client.post("/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers=alice).json()
        files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in pet_photos("dog")[:2]]
        response = client.post(f"/api/v1/pets/{pet['id']}/photos", files=files, headers=alice)
        assert response.status_code == 507, response.text
        assert response.json()["code"] == "insufficient_storage"
        assert int(response.headers["retry-after"]) > 0
        assert client.get(f"/api/v1/pets/{pet['id']}/photos", headers=alice).json()["items"] == []
