"""Subject masks through the service: shown over a photo on request, switched off per photo, used by the
training job, and never stored (no blob, no file, no row)."""

from __future__ import annotations

import io
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select, text

from petportrait.ml.train import read_lora_metadata
from petportrait.models import metadata
from petportrait.portraits.models import PetModel
from petportrait.web.app import Services
from tests.conftest import pet_photos, sign_up
from tests.notifications.test_flow import run_jobs


def _stored(services: Services, data_dir: Path) -> tuple[dict[str, int], list[str], list[str]]:
    """Row counts of every table but the audit log, blob keys, and the files under the data folder."""
    with services.engine.connect() as conn:
        counts = {
            table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for table in metadata.sorted_tables
            if not table.name.startswith("audit_")  # the read of the photo is audited
        }
    files = sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*") if p.is_file())
    return counts, sorted(b.key for b in services.blobs.list("")), files


def _pet_with_photos(client: TestClient, headers: dict[str, str], count: int) -> tuple[str, list[str]]:
    pet = client.post("/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers=headers).json()
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in pet_photos("dog")[:count]]
    uploaded = client.post(f"/api/v1/pets/{pet['id']}/photos", files=files, headers=headers)
    assert uploaded.status_code == 201, uploaded.text
    photos = client.get(f"/api/v1/pets/{pet['id']}/photos", headers=headers).json()["items"]
    return pet["id"], [p["id"] for p in photos]


def test_the_mask_is_drawn_over_the_photo_on_request_and_nothing_of_it_is_stored(
    services: Services, client: TestClient, tmp_path: Path
) -> None:
    alice = sign_up(client, "alice@example.com")
    bob = sign_up(client, "bob@example.com")
    _, photo_ids = _pet_with_photos(client, alice, 1)
    photo = client.get(f"/api/v1/photos/{photo_ids[0]}", headers=alice).json()
    assert photo["masking"] is True and photo["mask_url"] == f"/api/v1/photos/{photo_ids[0]}/mask"
    before = _stored(services, tmp_path)
    shown = client.get(photo["mask_url"], headers=alice)
    assert shown.status_code == 200 and shown.headers["content-type"] == "image/png"
    assert "no-store" in shown.headers["cache-control"]
    with Image.open(io.BytesIO(shown.content)) as image:
        assert max(image.size) == 512
    after = _stored(services, tmp_path)
    assert {k: v for k, v in after[0].items() if before[0][k] != v} == {}
    assert after[1] == before[1]  # no row, no blob
    assert {f for f in _stored(services, tmp_path)[2] if not f.endswith(("-wal", "-shm", ".db"))} == {
        f for f in before[2] if not f.endswith(("-wal", "-shm", ".db"))
    }
    with services.engine.connect() as conn:
        purposes = conn.execute(text("SELECT purpose FROM audit_log WHERE action = 'photo.read'")).scalars()
        assert "mask_preview" in list(purposes)
    refused = client.get(photo["mask_url"], headers=bob)
    assert refused.status_code == 404 and refused.json()["code"] == "photo_not_found"


def test_masking_can_be_turned_off_per_photo_and_training_honours_it(
    services: Services, client: TestClient, tmp_path: Path
) -> None:
    services.settings.ml.train_steps = 2
    services.settings.ml.resolution = 64
    services.settings.ml.device = "cpu"
    alice = sign_up(client, "alice@example.com")
    pet_id, photo_ids = _pet_with_photos(client, alice, 3)
    off = client.patch(f"/api/v1/photos/{photo_ids[1]}", json={"masking": False}, headers=alice)
    assert off.status_code == 200 and off.json()["masking"] is False
    bad = client.patch(f"/api/v1/photos/{photo_ids[1]}", json={"masking": "maybe"}, headers=alice)
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")

    trained = client.post(f"/api/v1/pets/{pet_id}/models", headers=alice).json()
    _, blobs_before, _ = _stored(services, tmp_path)
    run_jobs(services, tmp_path, trained["job"]["id"])
    with services.session_factory() as session:
        model = session.scalars(select(PetModel)).one()
        lora = services.blobs.get_bytes(model.storage_key)
        assert model.storage_key is not None
    metadata_of_lora = read_lora_metadata(lora)
    assert (metadata_of_lora["masked_photos"], metadata_of_lora["mask_background_weight"]) == ("2", "0.1")
    _, blobs_after, _ = _stored(services, tmp_path)
    assert sorted(set(blobs_after) - set(blobs_before)) == [model.storage_key]  # the model, nothing else


def test_the_photo_page_shows_the_mask_on_request_and_switches_masking(
    services: Services, client: TestClient
) -> None:
    from tests.web.test_pages import page_sign_up

    token = page_sign_up(client, "owner@example.com")
    created = client.post(
        "/pets", data={"name": "Rex", "species": "dog", "csrf_token": token}, follow_redirects=False
    )
    pet_path = created.headers["location"]
    photo = pet_photos("dog")[0]
    client.post(
        f"{pet_path}/photos",
        data={"csrf_token": token},
        files=[("files", (photo.name, photo.read_bytes(), "image/jpeg"))],
    )
    with services.session_factory() as session:
        photo_id = session.scalars(select(text("id")).select_from(text("photos"))).one()
    page = client.get(pet_path).text
    assert f'<img src="/api/v1/photos/{photo_id}/mask"' in page and 'loading="lazy"' in page
    assert "Train without the mask" in page
    shown = client.get(f"/api/v1/photos/{photo_id}/mask")  # what the browser fetches when the mask is opened
    assert shown.status_code == 200 and shown.headers["content-type"] == "image/png"
    switched = client.post(
        f"/photos/{photo_id}/masking", data={"csrf_token": token, "masking": "off"}, follow_redirects=False
    )
    assert switched.status_code == 303
    page = client.get(pet_path).text
    assert "Mask (off)" in page and "Train with the mask" in page
    refused = client.post(f"/photos/{photo_id}/masking", data={"masking": "off"})
    assert refused.status_code == 403
