"""Photo preparation: square crops that keep the animal, never mirrored unless asked, deterministic."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from petportrait.ml.photos import (
    CropBox,
    PhotoError,
    choose_square_crop,
    file_sha256,
    images_to_tensor,
    load_photo,
    prepare_photo,
    prepare_photos,
)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_photos_become_rgb_squares_at_the_requested_resolution(cat_photos: list[Path]) -> None:
    prepared = prepare_photos(cat_photos, resolution=96)
    assert len(prepared) == len(cat_photos)
    for photo, path in zip(prepared, cat_photos, strict=True):
        assert photo.image.size == (96, 96) and photo.image.mode == "RGB"
        assert photo.sha256 == file_sha256(path)
        assert photo.crop.width == photo.crop.height


def test_preparation_is_deterministic(dog_photos: list[Path]) -> None:
    first = prepare_photos(dog_photos, resolution=64)
    second = prepare_photos(dog_photos, resolution=64)
    for a, b in zip(first, second, strict=True):
        assert a.crop == b.crop
        assert a.image.tobytes() == b.image.tobytes()


def test_photos_are_not_mirrored_unless_asked(dog_photos: list[Path]) -> None:
    path = dog_photos[0]
    original = load_photo(path)
    (plain,) = prepare_photos([path], resolution=64)
    expected = original.resize((64, 64), Image.Resampling.LANCZOS, box=plain.crop.as_tuple())
    assert plain.image.tobytes() == expected.tobytes()
    assert plain.image.tobytes() != plain.image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).tobytes()

    unflipped, mirrored = prepare_photos([path], resolution=64, hflip=True)
    assert not unflipped.flipped and mirrored.flipped
    assert mirrored.image.tobytes() == plain.image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).tobytes()


@pytest.mark.parametrize("side", ["left", "right", "top", "bottom"])
def test_the_saliency_crop_keeps_an_animal_placed_off_centre(dog_photos: list[Path], side: str) -> None:
    dog = load_photo(dog_photos[0]).resize((300, 300))
    wide = side in ("left", "right")
    canvas = Image.new("RGB", (900, 300) if wide else (300, 900), (128, 128, 128))
    offset = 0 if side in ("left", "top") else 600
    canvas.paste(dog, (offset, 0) if wide else (0, offset))
    crop = choose_square_crop(canvas)
    assert crop.width == crop.height == 300
    start = crop.left if wide else crop.top
    overlap = max(0, min(start + 300, offset + 300) - max(start, offset))
    assert overlap >= 0.8 * 300, f"crop {crop} keeps only {overlap} of 300 px of the dog"


def test_a_crop_box_given_by_the_person_wins(tmp_path: Path, cat_photos: list[Path]) -> None:
    box = CropBox(100, 200, 700, 800)
    photo = prepare_photo(cat_photos[1], resolution=64, crop_box=box)
    assert photo.crop == box
    expected = load_photo(cat_photos[1]).resize((64, 64), Image.Resampling.LANCZOS, box=box.as_tuple())
    assert photo.image.tobytes() == expected.tobytes()


@pytest.mark.parametrize(
    ("box", "words"),
    [
        (CropBox(0, 0, 5000, 5000), "outside"),
        (CropBox(0, 0, 600, 300), "not square"),
        (CropBox(5, 5, 5, 5), "outside"),
    ],
)
def test_a_crop_box_that_does_not_fit_is_refused(cat_photos: list[Path], box: CropBox, words: str) -> None:
    with pytest.raises(PhotoError, match=words):
        prepare_photo(cat_photos[0], resolution=64, crop_box=box)


def test_exif_orientation_is_applied_before_cropping(tmp_path: Path) -> None:
    image = Image.new("RGB", (200, 100), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 100, 100))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif.tobytes(), quality=95)
    upright = load_photo(path)
    assert upright.size == (100, 200)
    top = np.asarray(upright)[:5].mean(axis=(0, 1))
    assert top[2] > 200 and top[0] < 60  # the blue half is now on top


def test_transparent_photos_are_flattened_onto_white(tmp_path: Path) -> None:
    path = tmp_path / "clear.png"
    Image.new("RGBA", (100, 100), (0, 0, 0, 0)).save(path)
    image = load_photo(path)
    assert image.mode == "RGB" and image.getpixel((50, 50)) == (255, 255, 255)


@pytest.mark.parametrize("content", [b"not an image at all", b"\xff\xd8\xff\xe0" + b"\x00" * 40])
def test_an_unreadable_file_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.jpg"
    path.write_bytes(content)
    with pytest.raises(PhotoError, match=r"cannot read the photo broken\.jpg"):
        load_photo(path)


def test_a_truncated_photo_is_a_clear_error(tmp_path: Path, cat_photos: list[Path]) -> None:
    data = cat_photos[0].read_bytes()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(PhotoError, match="truncated"):
        load_photo(path)


def test_a_photo_too_small_to_learn_from_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tiny.png"
    Image.new("RGB", (40, 60), (10, 20, 30)).save(path)
    with pytest.raises(PhotoError, match="at least 64 px"):
        prepare_photo(path, resolution=64)


def test_images_become_a_tensor_in_minus_one_to_one() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 255, 128)).save(buffer, "PNG")
    tensor = images_to_tensor([Image.open(buffer)])
    assert tensor.shape == (1, 3, 8, 8) and tensor.dtype == torch.float32
    assert tensor[0, 0].max().item() == -1.0 and tensor[0, 1].min().item() == 1.0
