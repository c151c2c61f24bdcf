from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from petportrait.clock import Clock
from petportrait.pets.models import Photo
from petportrait.web.app import Services
from tests.conftest import DATA, pet_photos
from tests.pets.helpers import gps_exif, jpeg_bytes, solid_png


def make_pet(client: TestClient, headers: dict[str, str], name: str = "Rex", species: str = "dog") -> str:
    response = client.post("/api/v1/pets", json={"name": name, "species": species}, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def upload(client: TestClient, headers: dict[str, str], pet_id: str, *files: tuple[str, bytes, str]):  # type: ignore[no-untyped-def]
    """POST a multipart body built by hand, so that file names reach the server byte for byte."""
    boundary = "pp-test-boundary-7d1f"
    parts = []
    for name, data, ctype in files:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            f"Content-Type: {ctype}\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return client.post(
        f"/api/v1/pets/{pet_id}/photos",
        headers={**headers, "content-type": f"multipart/form-data; boundary={boundary}"},
        content=body,
    )


def stored_state(services: Services) -> tuple[int, list[str]]:
    with services.session_factory() as session:
        rows = session.scalar(select(func.count()).select_from(Photo)) or 0
    return rows, [b.key for b in services.blobs.list("")]


def test_create_list_get_delete_pet(client: TestClient, alice: dict[str, str]) -> None:
    pet_id = make_pet(client, alice, "Mittens", "cat")
    listed = client.get("/api/v1/pets", headers=alice).json()["items"]
    assert [p["id"] for p in listed] == [pet_id]
    assert client.get(f"/api/v1/pets/{pet_id}", headers=alice).json()["species"] == "cat"
    assert client.delete(f"/api/v1/pets/{pet_id}", headers=alice).status_code == 204
    assert client.get(f"/api/v1/pets/{pet_id}", headers=alice).status_code == 404


def test_unknown_species_is_refused(client: TestClient, alice: dict[str, str]) -> None:
    response = client.post("/api/v1/pets", json={"name": "Nemo", "species": "fish"}, headers=alice)
    assert response.status_code == 422 and response.json()["code"] == "validation_error"


def test_upload_several_real_photos_sets_expiry_30_days(
    client: TestClient, alice: dict[str, str], services: Services, frozen_clock: Clock
) -> None:
    pet_id = make_pet(client, alice)
    files = [(p.name, p.read_bytes(), "image/jpeg") for p in pet_photos("dog")[:4]]
    response = upload(client, alice, pet_id, *files)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["stored"] == 4 and body["rejected"] == 0
    now = frozen_clock.now()
    for result in body["results"]:
        photo = result["photo"]
        from datetime import datetime

        uploaded = datetime.fromisoformat(photo["uploaded_at"])
        expires = datetime.fromisoformat(photo["expires_at"])
        assert uploaded == now
        assert expires - uploaded == timedelta(days=30)
    listed = client.get(f"/api/v1/pets/{pet_id}/photos", headers=alice).json()["items"]
    assert len(listed) == 4
    assert stored_state(services)[0] == 4
    assert all(key.startswith("photos/") for key in stored_state(services)[1])


def test_stored_bytes_carry_no_metadata_and_gps_is_gone(client: TestClient, alice: dict[str, str]) -> None:
    pet_id = make_pet(client, alice)
    source = pet_photos("cat")[0]
    data = jpeg_bytes(source, exif=gps_exif())
    assert b"SecretCam" in data
    response = upload(client, alice, pet_id, ("cat.jpg", data, "image/jpeg"))
    assert response.status_code == 201, response.text
    photo = response.json()["results"][0]["photo"]
    content = client.get(photo["content_url"], headers=alice)
    assert content.status_code == 200
    stored = content.content
    assert b"SecretCam" not in stored and b"Exif" not in stored
    with Image.open(io.BytesIO(stored)) as img:
        assert not img.getexif()
        assert "icc_profile" not in img.info and "exif" not in img.info


def test_exif_orientation_is_applied(client: TestClient, alice: dict[str, str]) -> None:
    pet_id = make_pet(client, alice)
    source = pet_photos("dog2")[0]
    with Image.open(source) as img:
        img = img.convert("RGB")
        landscape = img.resize((600, 400))
    out = io.BytesIO()
    landscape.save(out, "JPEG", quality=95, exif=gps_exif(orientation=6))
    response = upload(client, alice, pet_id, ("rotated.jpg", out.getvalue(), "image/jpeg"))
    assert response.status_code == 201, response.text
    photo = response.json()["results"][0]["photo"]
    assert (photo["width"], photo["height"]) == (400, 600)


def test_near_duplicate_of_same_pet_is_rejected(client: TestClient, alice: dict[str, str]) -> None:
    pet_id = make_pet(client, alice)
    source = pet_photos("dog3")[0]
    first = upload(client, alice, pet_id, ("a.jpg", source.read_bytes(), "image/jpeg"))
    assert first.status_code == 201
    copy = jpeg_bytes(source, scale=0.8, quality=70)
    second = upload(client, alice, pet_id, ("b.jpg", copy, "image/jpeg"))
    assert second.status_code == 422
    assert second.json()["code"] == "duplicate_photo"
    other_pet = make_pet(client, alice, "Twin")
    assert upload(client, alice, other_pet, ("b.jpg", copy, "image/jpeg")).status_code == 201


def test_mixed_upload_stores_good_files_and_names_each_rejection(
    client: TestClient, alice: dict[str, str], services: Services
) -> None:
    pet_id = make_pet(client, alice)
    good = pet_photos("cat")[1]
    response = upload(
        client,
        alice,
        pet_id,
        ("good.jpg", good.read_bytes(), "image/jpeg"),
        ("notes.jpg", b"hello", "image/jpeg"),
    )
    assert response.status_code == 201
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["stored", "rejected"]
    assert results[1]["code"] == "not_an_image"
    assert stored_state(services)[0] == 1


def _bomb() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + chunk(b"IEND", b"")
    )


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (300, 300), c) for c in [(255, 0, 0), (0, 255, 0)]]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


def _truncated() -> bytes:
    data = pet_photos("dog")[0].read_bytes()
    return data[: len(data) // 2]


BAD_INPUTS = {
    "truncated": ("t.jpg", _truncated, "image/jpeg", "corrupt_image"),
    "text_named_jpeg": (
        "notes.jpg",
        lambda: b"just some text, not a photo\n" * 20,
        "image/jpeg",
        "not_an_image",
    ),
    "bomb": ("bomb.png", _bomb, "image/png", "decompression_bomb"),
    "animated": ("anim.gif", _animated_gif, "image/gif", "animated_image"),
    "too_small": ("small.png", lambda: solid_png(200, 300), "image/png", "image_too_small"),
    "empty": ("empty.jpg", lambda: b"", "image/jpeg", "empty_file"),
    "path_separator": (
        "../../etc/passwd.jpg",
        lambda: pet_photos("dog")[1].read_bytes(),
        "image/jpeg",
        "invalid_filename",
    ),
    "control_chars": (
        "a\x07b.jpg",
        lambda: pet_photos("dog")[1].read_bytes(),
        "image/jpeg",
        "invalid_filename",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_upload_is_rejected_with_its_code_and_nothing_stored(
    case: str, client: TestClient, alice: dict[str, str], services: Services
) -> None:
    name, make, ctype, code = BAD_INPUTS[case]
    pet_id = make_pet(client, alice)
    response = upload(client, alice, pet_id, (name, make(), ctype))  # type: ignore[operator]
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code, body
    assert body["detail"]
    assert stored_state(services) == (0, [])


def test_file_over_size_limit_is_rejected(
    services: Services, alice: dict[str, str], client: TestClient
) -> None:
    services.settings.security.max_upload_bytes = 50_000
    try:
        pet_id = make_pet(client, alice)
        big = pet_photos("dog")[0].read_bytes()
        assert len(big) > 50_000
        response = upload(client, alice, pet_id, ("big.jpg", big, "image/jpeg"))
        assert response.status_code == 422 and response.json()["code"] == "file_too_large"
        assert stored_state(services) == (0, [])
    finally:
        services.settings.security.max_upload_bytes = 20 * 1024 * 1024


def test_oversize_request_body_is_413(services: Services, alice: dict[str, str]) -> None:
    from petportrait.web.app import create_app

    services.settings.security.max_request_bytes = 100_000
    try:
        with TestClient(create_app(services=services)) as small:
            pet_id = make_pet(small, alice)
            data = b"x" * 200_000
            response = upload(small, alice, pet_id, ("big.jpg", data, "image/jpeg"))
            assert response.status_code == 413
            assert response.json()["code"] == "request_too_large"
    finally:
        services.settings.security.max_request_bytes = 128 * 1024 * 1024
    assert stored_state(services) == (0, [])


def test_no_files_is_a_clear_error(client: TestClient, alice: dict[str, str]) -> None:
    pet_id = make_pet(client, alice)
    response = client.post(f"/api/v1/pets/{pet_id}/photos", headers=alice, data={"x": "1"})
    assert response.status_code == 400 and response.json()["code"] == "no_files"


def test_at_most_30_photos_per_pet(client: TestClient, alice: dict[str, str], services: Services) -> None:
    services.settings.security.max_photos_per_pet = 3
    try:
        pet_id = make_pet(client, alice)
        photos = pet_photos("dog")[:4]
        response = upload(client, alice, pet_id, *[(p.name, p.read_bytes(), "image/jpeg") for p in photos])
        results = response.json()["results"]
        assert [r["status"] for r in results] == ["stored", "stored", "stored", "rejected"]
        assert results[3]["code"] == "too_many_photos"
        assert stored_state(services)[0] == 3
    finally:
        services.settings.security.max_photos_per_pet = 30


def test_photo_delete_removes_blob_and_row(
    client: TestClient, alice: dict[str, str], services: Services
) -> None:
    pet_id = make_pet(client, alice)
    photo = upload(client, alice, pet_id, ("a.jpg", pet_photos("cat")[2].read_bytes(), "image/jpeg")).json()
    photo_id = photo["results"][0]["photo"]["id"]
    assert client.delete(f"/api/v1/photos/{photo_id}", headers=alice).status_code == 204
    assert client.get(f"/api/v1/photos/{photo_id}", headers=alice).status_code == 404
    assert stored_state(services) == (0, [])


def test_expired_photo_is_hidden_at_once_and_gone_from_its_link(
    client: TestClient, alice: dict[str, str], frozen_clock: Clock
) -> None:
    pet_id = make_pet(client, alice)
    photo = upload(client, alice, pet_id, ("a.jpg", pet_photos("cat")[3].read_bytes(), "image/jpeg")).json()
    photo_id = photo["results"][0]["photo"]["id"]
    frozen_clock.advance(timedelta(days=30) - timedelta(seconds=1))
    assert len(client.get(f"/api/v1/pets/{pet_id}/photos", headers=alice).json()["items"]) == 1
    frozen_clock.advance(timedelta(seconds=1))
    assert client.get(f"/api/v1/pets/{pet_id}/photos", headers=alice).json()["items"] == []
    gone = client.get(f"/api/v1/photos/{photo_id}/content", headers=alice)
    assert gone.status_code == 410 and gone.json()["code"] == "photo_expired"


def test_another_persons_ids_are_404_on_every_path(
    client: TestClient, alice: dict[str, str], bob: dict[str, str], services: Services
) -> None:
    pet_id = make_pet(client, alice)
    photo = upload(client, alice, pet_id, ("a.jpg", pet_photos("dog2")[1].read_bytes(), "image/jpeg")).json()
    photo_id = photo["results"][0]["photo"]["id"]
    good = pet_photos("dog2")[2].read_bytes()
    attempts = [
        client.get(f"/api/v1/pets/{pet_id}", headers=bob),
        client.delete(f"/api/v1/pets/{pet_id}", headers=bob),
        client.get(f"/api/v1/pets/{pet_id}/photos", headers=bob),
        upload(client, bob, pet_id, ("b.jpg", good, "image/jpeg")),
        client.get(f"/api/v1/photos/{photo_id}", headers=bob),
        client.get(f"/api/v1/photos/{photo_id}/content", headers=bob),
        client.delete(f"/api/v1/photos/{photo_id}", headers=bob),
    ]
    for response in attempts:
        assert response.status_code == 404, (response.request.url, response.text)
        assert response.json()["code"] in {"pet_not_found", "photo_not_found"}
    assert client.get("/api/v1/pets", headers=bob).json()["items"] == []
    assert stored_state(services)[0] == 1
    assert client.get(f"/api/v1/photos/{photo_id}/content", headers=alice).status_code == 200


def test_pet_delete_removes_its_photos(client: TestClient, alice: dict[str, str], services: Services) -> None:
    pet_id = make_pet(client, alice)
    upload(client, alice, pet_id, *[(p.name, p.read_bytes(), "image/jpeg") for p in pet_photos("cat")[:2]])
    assert stored_state(services)[0] == 2
    assert client.delete(f"/api/v1/pets/{pet_id}", headers=alice).status_code == 204
    assert stored_state(services) == (0, [])


def test_photo_files_exist(tmp_path: Path) -> None:
    """Fails, never skips, without the shared data: the tests that use the photos skip then."""
    assert DATA.is_dir(), f"test data missing: {DATA} (the photo tests skip; --strict-skips fails them)"
    assert len(pet_photos("dog")) >= 4 and len(pet_photos("cat")) >= 4
