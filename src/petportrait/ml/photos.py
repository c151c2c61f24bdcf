"""Preparing a pet's photos for training: a square crop that keeps the animal, resized, deterministic.

The crop is the largest square of the photo, placed where the photo is most salient (spectral-residual
saliency with a mild centre prior); a crop box given by the person wins. Photos are never flipped unless
asked: a pet's markings are asymmetric.

A photo is given as a file path or in memory (``PhotoData``: a name and the bytes; plain ``bytes``); the
service passes photos in memory, so nothing derived from them is written to a worker's disk.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

MIN_CROP_SIDE = 64
_SALIENCY_SIDE = 64


class PhotoError(ValueError):
    """A photo that cannot be used: unreadable, too small, or with a crop box that does not fit."""


@dataclass(frozen=True)
class CropBox:
    """A crop in pixels of the upright photo (after EXIF rotation): left, top, right, bottom."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.left, self.top, self.right, self.bottom)


@dataclass(frozen=True)
class PhotoData:
    """A photo in memory: a name for messages (never a path) and the file's bytes."""

    name: str
    data: bytes = field(repr=False)


PhotoSource = Path | str | bytes | PhotoData


def photo_data(source: PhotoSource) -> PhotoData:
    """``source`` in memory: a path is read, bytes are named ``photo``."""
    if isinstance(source, PhotoData):
        return source
    if isinstance(source, bytes | bytearray | memoryview):
        return PhotoData("photo", bytes(source))
    path = Path(source)
    try:
        return PhotoData(path.name, path.read_bytes())
    except OSError as exc:
        raise PhotoError(f"cannot read the photo {path.name}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class PreparedPhoto:
    """One photo ready for training: ``image`` is RGB, ``resolution`` pixels square."""

    source: str  # the photo's name
    sha256: str
    crop: CropBox
    image: Image.Image
    flipped: bool = False
    # The subject mask under the crop, (resolution, resolution) in [0, 1]; None where the photo is not masked.
    mask: np.ndarray | None = field(default=None, repr=False)


# Makes a subject mask of a whole photo (mode L, any size); ``petportrait.ml.masks`` has the makers.
MaskMaker = Callable[[Image.Image], Image.Image]


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_photo(source: PhotoSource) -> Image.Image:
    """The photo, upright (EXIF orientation applied) and RGB; raises PhotoError if unreadable."""
    photo = photo_data(source)
    try:
        with Image.open(io.BytesIO(photo.data)) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise PhotoError(f"cannot read the photo {photo.name}: {exc}") from None
    if image.mode in ("RGBA", "LA", "P", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def _smooth(array: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``array`` filtered by the separable 1-D ``kernel`` along both axes, edges reflected."""
    pad = len(kernel) // 2
    padded = np.pad(array, pad, mode="reflect")
    rows = np.apply_along_axis(lambda line: np.convolve(line, kernel, mode="valid"), 1, padded)
    return np.apply_along_axis(lambda line: np.convolve(line, kernel, mode="valid"), 0, rows)


def saliency_map(image: Image.Image) -> np.ndarray:
    """A saliency map of ``image``, summing to 1, on a copy at most 64 pixels on a side (rows, columns).

    It is the product of two cues, times a mild centre prior: spectral residual (Hou and Zhang, 2007), which
    finds detail that stands out from the photo's texture, and colour contrast against the photo's border,
    which finds an animal standing out from its background.
    """
    small = image.convert("RGB")
    small.thumbnail((_SALIENCY_SIDE, _SALIENCY_SIDE), Image.Resampling.BILINEAR)
    rgb = np.asarray(small, dtype=np.float64) / 255.0
    gray = rgb.mean(axis=2)
    gaussian = np.exp(-0.5 * (np.arange(-7, 8) / 2.5) ** 2)
    gaussian /= gaussian.sum()

    spectrum = np.fft.fft2(gray)
    log_amplitude = np.log(np.abs(spectrum) + 1e-8)
    residual = log_amplitude - _smooth(log_amplitude, np.ones(3) / 3.0)
    spectral = _smooth(np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2, gaussian)
    spectral /= spectral.max() + 1e-12

    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    distance = np.sqrt(((rgb[:, :, None, :] - border[None, None, :, :]) ** 2).sum(axis=3))
    contrast = _smooth(np.quantile(distance, 0.1, axis=2), gaussian)
    contrast /= contrast.max() + 1e-12

    rows, cols = gray.shape
    y = (np.arange(rows) - (rows - 1) / 2) / max(rows, 1)
    x = (np.arange(cols) - (cols - 1) / 2) / max(cols, 1)
    centre_prior = np.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * 0.35**2))
    saliency = (0.5 * spectral + contrast) * centre_prior
    total = saliency.sum()
    if not np.isfinite(total) or total <= 0:
        return np.full_like(saliency, 1.0 / saliency.size)
    return saliency / total


def choose_square_crop(image: Image.Image, *, weights: np.ndarray | None = None) -> CropBox:
    """The largest square of ``image``, slid along the long side to hold the most saliency (or ``weights``,
    a map of the whole photo at any size, such as its subject mask)."""
    width, height = image.size
    side = min(width, height)
    if width == height:
        return CropBox(0, 0, side, side)
    saliency = saliency_map(image) if weights is None else weights
    # Saliency mass along the long axis, in full-resolution pixel units.
    profile = saliency.sum(axis=0) if width > height else saliency.sum(axis=1)
    long_side = max(width, height)
    positions = np.linspace(0, long_side, num=len(profile) + 1)
    cumulative = np.concatenate([[0.0], np.cumsum(profile)])
    best_offset, best_mass = 0, -1.0
    for offset in range(0, long_side - side + 1, max(1, (long_side - side) // 256)):
        mass = np.interp(offset + side, positions, cumulative) - np.interp(offset, positions, cumulative)
        if mass > best_mass + 1e-12:
            best_offset, best_mass = offset, float(mass)
    if width > height:
        return CropBox(best_offset, 0, best_offset + side, side)
    return CropBox(0, best_offset, side, best_offset + side)


def check_crop_box(box: CropBox, size: tuple[int, int], name: str) -> None:
    """Raise PhotoError unless ``box`` lies inside a photo of ``size`` and is (nearly) square."""
    width, height = size
    if not (0 <= box.left < box.right <= width and 0 <= box.top < box.bottom <= height):
        raise PhotoError(f"the crop box {box.as_tuple()} for {name} is outside the photo ({width}x{height})")
    if abs(box.width - box.height) > max(2, 0.02 * max(box.width, box.height)):
        raise PhotoError(f"the crop box {box.as_tuple()} for {name} is {box.width}x{box.height}, not square")


def prepare_photo(
    source: PhotoSource,
    *,
    resolution: int,
    crop_box: CropBox | None = None,
    mask_maker: MaskMaker | None = None,
) -> PreparedPhoto:
    """Read one photo, crop it square (``crop_box`` if given, else by its subject mask when ``mask_maker`` is
    given, else by saliency), resize to ``resolution``; with ``mask_maker`` the mask under the crop comes
    too."""
    photo = photo_data(source)
    image = load_photo(photo)
    mask = mask_maker(image) if mask_maker is not None else None
    if crop_box is not None:
        check_crop_box(crop_box, image.size, photo.name)
        crop = crop_box
    else:
        weights = None if mask is None else np.asarray(mask, dtype=np.float64) + 1e-6
        crop = choose_square_crop(image, weights=weights)
    if min(crop.width, crop.height) < MIN_CROP_SIDE:
        raise PhotoError(
            f"the photo {photo.name} gives a {crop.width}x{crop.height} crop; "
            f"at least {MIN_CROP_SIDE} px is needed"
        )
    resized = image.resize((resolution, resolution), Image.Resampling.LANCZOS, box=crop.as_tuple())
    digest = hashlib.sha256(photo.data).hexdigest()
    cut = None if mask is None else mask_under_crop(mask, crop, photo_size=image.size, resolution=resolution)
    return PreparedPhoto(source=photo.name, sha256=digest, crop=crop, image=resized, mask=cut)


def mask_under_crop(
    mask: Image.Image, crop: CropBox, *, photo_size: tuple[int, int], resolution: int
) -> np.ndarray:
    """The part of ``mask`` (of the whole photo, any size) under ``crop`` at ``resolution``, in [0, 1]."""
    scale_x, scale_y = mask.width / photo_size[0], mask.height / photo_size[1]
    box = (crop.left * scale_x, crop.top * scale_y, crop.right * scale_x, crop.bottom * scale_y)
    cut = mask.convert("L").resize((resolution, resolution), Image.Resampling.BILINEAR, box=box)
    return np.asarray(cut, dtype=np.float32) / 255.0


def prepare_photos(
    paths: Sequence[PhotoSource],
    *,
    resolution: int,
    crop_boxes: Sequence[CropBox | None] | None = None,
    hflip: bool = False,
    mask_makers: Sequence[MaskMaker | None] | None = None,
) -> list[PreparedPhoto]:
    """Prepare every photo, in order; with ``hflip`` each is followed by its mirror image. ``mask_makers``
    (one per photo, None for a photo not masked) gives each photo its subject mask."""
    if crop_boxes is not None and len(crop_boxes) != len(paths):
        raise PhotoError(f"{len(crop_boxes)} crop boxes were given for {len(paths)} photos")
    if mask_makers is not None and len(mask_makers) != len(paths):
        raise PhotoError(f"{len(mask_makers)} mask choices were given for {len(paths)} photos")
    boxes = crop_boxes if crop_boxes is not None else [None] * len(paths)
    makers = mask_makers if mask_makers is not None else [None] * len(paths)
    prepared: list[PreparedPhoto] = []
    for path, box, maker in zip(paths, boxes, makers, strict=True):
        photo = prepare_photo(path, resolution=resolution, crop_box=box, mask_maker=maker)
        prepared.append(photo)
        if hflip:
            mirrored = photo.image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            mirror_mask = None if photo.mask is None else np.ascontiguousarray(photo.mask[:, ::-1])
            prepared.append(
                PreparedPhoto(
                    photo.source, photo.sha256, photo.crop, mirrored, flipped=True, mask=mirror_mask
                )
            )
    return prepared


def images_to_tensor(images: Sequence[Image.Image]) -> torch.Tensor:
    """RGB images of one size as a float32 tensor (N, 3, H, W) scaled to [-1, 1]."""
    array = np.stack([np.asarray(image.convert("RGB"), dtype=np.float32) for image in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous() / 127.5 - 1.0
