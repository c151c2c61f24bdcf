"""Upload work is bounded, driven through HTTP as an attacker would: byte-identical copies are refused
before decoding, a request's total decoding is capped, and an oversize file is cut while it streams."""

from __future__ import annotations

import asyncio
import io
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from petportrait.multipart import CappedMultiPartParser
from petportrait.pets import imaging
from petportrait.web.app import Services
from tests.conftest import pet_photos
from tests.pets.helpers import jpeg_bytes


def _pet(client: TestClient, headers: dict[str, str]) -> str:
    response = client.post("/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers=headers)
    assert response.status_code == 201
    return str(response.json()["id"])


def _post(client: TestClient, headers: dict[str, str], pet_id: str, files: list[tuple[str, bytes]]) -> Any:
    return client.post(
        f"/api/v1/pets/{pet_id}/photos",
        files=[("files", (name, data, "image/jpeg")) for name, data in files],
        headers=headers,
    )


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times the sanitiser decoded a file (it is the only place pixels are decoded)."""
    calls: list[int] = []
    real = imaging._sanitize_opened

    def counting(image: Image.Image, **kwargs: Any) -> imaging.SanitizedPhoto:
        calls.append(image.width * image.height)
        return real(image, **kwargs)

    monkeypatch.setattr(imaging, "_sanitize_opened", counting)
    return calls


def test_byte_identical_copies_are_refused_before_decoding(
    client: TestClient, alice: dict[str, str], decodes: list[int]
) -> None:
    pet_id = _pet(client, alice)
    photo = pet_photos("dog")[0].read_bytes()
    response = _post(client, alice, pet_id, [(f"copy{n}.jpg", photo) for n in range(8)])
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["stored"] == 1 and body["rejected"] == 7
    assert {r["code"] for r in body["results"][1:]} == {"duplicate_photo"}
    assert len(decodes) == 1  # the seven copies were never decoded
    # a later request with the same bytes: refused against the stored photo, undecoded as well
    again = _post(client, alice, pet_id, [("again.jpg", photo)])
    assert again.status_code == 422 and again.json()["code"] == "duplicate_photo"
    assert len(decodes) == 1


def test_copies_of_a_refused_file_are_told_its_own_reason_without_decoding_again(
    client: TestClient, alice: dict[str, str], decodes: list[int]
) -> None:
    pet_id = _pet(client, alice)
    small = io.BytesIO()
    Image.new("RGB", (200, 150), (180, 120, 90)).save(small, format="JPEG")
    response = _post(
        client, alice, pet_id, [("tiny.jpg", small.getvalue()), ("tiny-again.jpg", small.getvalue())]
    )
    codes = [r["code"] for r in response.json()["results"]]
    assert codes == ["image_too_small", "image_too_small"]  # not "you already uploaded this photo"
    assert len(decodes) <= 1


def test_a_request_decodes_at_most_its_pixel_budget(
    client: TestClient, services: Services, alice: dict[str, str], decodes: list[int]
) -> None:
    photos = [jpeg_bytes(p, scale=0.5) for p in pet_photos("dog")[:4]]
    with Image.open(io.BytesIO(photos[0])) as first:
        pixels = first.width * first.height
    services.settings.quotas.upload_pixels_per_request = int(pixels * 2.5)  # room for two such photos
    pet_id = _pet(client, alice)
    response = _post(client, alice, pet_id, [(f"p{n}.jpg", data) for n, data in enumerate(photos)])
    assert response.status_code == 201, response.text
    codes = [r["code"] for r in response.json()["results"]]
    assert codes[:2] == [None, None] and codes[2:] == ["upload_work_exceeded"] * 2
    assert len(decodes) == 2
    # the budget is per request: the next request may decode again
    later = _post(client, alice, pet_id, [("p2.jpg", photos[2])])
    assert later.status_code == 201 and later.json()["stored"] == 1


def test_an_oversize_file_is_cut_while_streaming_and_refused_by_name(
    client: TestClient, services: Services, alice: dict[str, str], decodes: list[int]
) -> None:
    services.settings.security.max_upload_bytes = 300_000
    pet_id = _pet(client, alice)
    good = jpeg_bytes(pet_photos("dog")[0], scale=0.5)
    assert len(good) < 300_000
    huge = good + b"\0" * 5_000_000  # starts like a JPEG, 5 MB long
    response = _post(client, alice, pet_id, [("huge.jpg", huge), ("good.jpg", good)])
    assert response.status_code == 201, response.text
    huge_result, good_result = response.json()["results"]
    assert huge_result["code"] == "file_too_large" and good_result["status"] == "stored"
    assert len(decodes) == 1


async def _one_chunk(body: bytes) -> Any:
    for start in range(0, len(body), 64 * 1024):
        yield body[start : start + 64 * 1024]


def test_the_parser_keeps_at_most_one_byte_over_the_limit_of_a_file() -> None:
    # On an event loop of its own, in a thread of its own: whatever loop another test left running here.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _parse_a_big_file()).result(timeout=60)


async def _parse_a_big_file() -> None:
    from starlette.datastructures import Headers, UploadFile

    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + b"x" * 3_000_000
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = Headers({"content-type": f"multipart/form-data; boundary={boundary}"})
    parser = CappedMultiPartParser(headers, _one_chunk(body), max_file_bytes=1000)
    form = await parser.parse()
    upload = form["files"]
    assert isinstance(upload, UploadFile)
    assert len(await upload.read()) == 1001
    await form.close()
