"""Photo sanitising: decide whether uploaded bytes are a usable pet photo, and re-encode them clean.

No web or database imports: this module takes bytes and returns bytes (or raises PhotoRejected with a
stable code).

What comes out is always a baseline JPEG (quality 92) in sRGB with no metadata at all: no EXIF (so no
GPS, camera serial or orientation tag), no XMP, no ICC profile, no comments. The EXIF orientation is
applied to the pixels first; an embedded ICC profile is applied by converting the pixels to sRGB ("ICC
kept only as colour"); transparency is flattened onto white. One output format keeps training,
thumbnails and downloads simple, and a photo of a pet has no use for an alpha channel.

The order of the checks is part of the contract, because it decides which code a person sees:
filename, empty, size in bytes, what the bytes are (sniffed, never the name or content type), pixel
count from the header (before any pixel is decoded), frame count, format, full decode, then the
short side after orientation.
"""

from __future__ import annotations

import hashlib
import io
import unicodedata
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

JPEG_QUALITY = 92
SUPPORTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP")
HEIF_FORMATS: tuple[str, ...] = ("HEIF",)
# Phones write JPEGs with extra pictures after the photo (depth maps, HDR gain maps): Pillow calls those
# MPO. The first picture is the photo itself; the rest are ignored (and never written out).
MULTI_PICTURE_JPEG = "MPO"
PHASH_SIZE = 32  # the image is reduced to 32x32 before the DCT
PHASH_LOW = 8  # the top-left 8x8 DCT coefficients make the 64 bits
DEFAULT_NEAR_DUPLICATE_THRESHOLD = 6

# Characters that reorder or hide text when a filename is shown (bidirectional overrides and isolates).
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
# Errors Pillow raises on malformed or truncated data.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError)


class PhotoRejected(ValueError):
    """An upload that is not an acceptable photo; `code` is stable, `detail` is for a person."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class DecodeBudget:
    """How many pixels one request may still decode, all its files together; taken from the header of
    each image before it is decoded, whether the decode then succeeds or not."""

    def __init__(self, pixels: int) -> None:
        self.left = pixels

    def take(self, pixels: int) -> None:
        """Take `pixels` for the next decode, or refuse the file (`upload_work_exceeded`) without decoding."""
        if pixels > self.left:
            raise PhotoRejected(
                "upload_work_exceeded",
                "This request already decoded as many pixels as one upload may; send this photo in "
                "another request.",
            )
        self.left -= pixels


@dataclass(frozen=True)
class SanitizedPhoto:
    """A photo re-encoded without metadata, with its hashes."""

    data: bytes
    content_type: str
    extension: str
    width: int
    height: int
    sha256: str
    phash: str


def validate_filename(name: str | None) -> str:
    """Return the filename if it is safe to keep and show, else raise PhotoRejected('invalid_filename')."""
    if name is None or name.strip() == "":
        raise PhotoRejected("invalid_filename", "The file has no name.")
    if len(name) > 255:
        raise PhotoRejected("invalid_filename", "The file name is longer than 255 characters.")
    if "/" in name or "\\" in name:
        raise PhotoRejected("invalid_filename", "The file name must not contain '/' or '\\'.")
    if name in (".", "..") or name.strip(". ") == "":
        raise PhotoRejected("invalid_filename", "The file name must not be '.' or '..'.")
    for char in name:
        if unicodedata.category(char) == "Cc" or char in _BIDI_CONTROLS:
            raise PhotoRejected("invalid_filename", "The file name contains control characters.")
    return name


def sanitize_photo(
    data: bytes,
    *,
    filename: str | None,
    content_type: str | None,
    max_bytes: int = 20 * 1024 * 1024,
    min_side: int = 256,
    max_pixels: int = 50_000_000,
    decode_budget: DecodeBudget | None = None,
) -> SanitizedPhoto:
    """Check an uploaded photo and re-encode it as a metadata-free sRGB JPEG; raise PhotoRejected if unfit.

    `content_type` is what the client claimed; it is deliberately not trusted (the bytes are sniffed) and
    only appears in messages. A filename, when given, must pass validate_filename. `decode_budget`, when
    given, is how many pixels the request may still decode: a larger image is refused from its header.
    """
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True somewhere in this process; photo sanitising "
            "refuses to run, because truncated uploads would be accepted with grey bands"
        )
    if filename is not None:
        validate_filename(filename)
    if not data:
        raise PhotoRejected("empty_file", "The file is empty.")
    if len(data) > max_bytes:
        raise PhotoRejected(
            "file_too_large", f"The file is {len(data):,} bytes; the limit is {max_bytes:,} bytes."
        )

    with warnings.catch_warnings():
        # Pillow warns (rather than fails) between MAX_IMAGE_PIXELS and twice that; refuse those too.
        # (catch_warnings swaps a process-wide filter list; at worst a race leaves this filter on.)
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = _open(data, content_type)
        try:
            if decode_budget is not None:
                decode_budget.take(image.width * image.height)
            return _sanitize_opened(image, min_side=min_side, max_pixels=max_pixels)
        finally:
            image.close()


def _open(data: bytes, content_type: str | None) -> Image.Image:
    """Identify the bytes from their header alone; no pixels are decoded here."""
    accepted = _accepted_formats()
    try:
        # GIF is opened only so that an animated GIF can be named as such; a still GIF is refused below.
        return Image.open(io.BytesIO(data), formats=[*accepted, "GIF"])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PhotoRejected(
            "decompression_bomb", "The image claims more pixels than can be processed safely."
        ) from exc
    except UnidentifiedImageError:
        pass
    except _DECODE_ERRORS:
        pass
    signature = _signature(data)
    if signature is not None:
        # It starts like one of ours but Pillow cannot even read its header: cut short or damaged.
        raise PhotoRejected(
            "corrupt_image", f"The file starts like a {signature} image but is truncated or damaged."
        )
    # Not one of ours: is it an image at all? Only the header is read.
    try:
        with Image.open(io.BytesIO(data)) as other:
            found = other.format or "unknown"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PhotoRejected(
            "decompression_bomb", "The image claims more pixels than can be processed safely."
        ) from exc
    except (UnidentifiedImageError, *_DECODE_ERRORS) as exc:
        claimed = f" (sent as {content_type})" if content_type else ""
        raise PhotoRejected("not_an_image", f"The file is not an image that can be read{claimed}.") from exc
    raise PhotoRejected(
        "unsupported_format",
        f"{found} images are not accepted; please upload a {_format_list(accepted)} photo.",
    )


def _signature(data: bytes) -> str | None:
    """The accepted format whose magic bytes the data starts with, if any."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


def _sanitize_opened(image: Image.Image, *, min_side: int, max_pixels: int) -> SanitizedPhoto:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise PhotoRejected("corrupt_image", "The image has no pixels.")
    if width * height > max_pixels:
        raise PhotoRejected(
            "decompression_bomb",
            f"The image is {width}x{height} pixels; the limit is {max_pixels:,} pixels in all.",
        )
    try:
        frames = 1 if image.format == MULTI_PICTURE_JPEG else int(getattr(image, "n_frames", 1))
    except _DECODE_ERRORS as exc:
        raise PhotoRejected("corrupt_image", "The image data is damaged and cannot be read.") from exc
    if frames > 1:
        raise PhotoRejected(
            "animated_image", "Animated images are not accepted; please upload a still photo."
        )
    accepted = _accepted_formats()
    if image.format not in accepted and image.format != MULTI_PICTURE_JPEG:
        raise PhotoRejected(
            "unsupported_format",
            f"{image.format} images are not accepted; please upload a {_format_list(accepted)} photo.",
        )

    try:
        image.load()  # decode every pixel now: truncated or corrupt data fails here, not later
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PhotoRejected(
            "decompression_bomb", "The image claims more pixels than can be processed safely."
        ) from exc
    except _DECODE_ERRORS as exc:
        raise PhotoRejected("corrupt_image", "The image is truncated or damaged and cannot be read.") from exc

    icc_profile = image.info.get("icc_profile")
    upright = _apply_orientation(image)
    width, height = upright.size
    if min(width, height) < min_side:
        raise PhotoRejected(
            "image_too_small",
            f"The image is {width}x{height} pixels; its shorter side must be at least {min_side} pixels.",
        )

    clean = _to_srgb(upright, icc_profile if isinstance(icc_profile, bytes) else None)
    # _to_srgb returns a new image; emptying its info dict leaves the encoder nothing to copy over
    # (Pillow's JPEG writer takes a comment from it), and nothing is passed to save but pixels options.
    clean.info = {}
    out = io.BytesIO()
    clean.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    encoded = out.getvalue()
    return SanitizedPhoto(
        data=encoded,
        content_type="image/jpeg",
        extension="jpg",
        width=clean.width,
        height=clean.height,
        sha256=hashlib.sha256(encoded).hexdigest(),
        phash=phash(clean),
    )


def _apply_orientation(image: Image.Image) -> Image.Image:
    """The image turned upright per its EXIF orientation; a malformed EXIF block counts as 'upright'."""
    try:
        return ImageOps.exif_transpose(image)
    except (*_DECODE_ERRORS, KeyError, AttributeError):
        return image


def _to_srgb(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """RGB pixels in sRGB: the ICC profile applied, 16-bit depth reduced, transparency flattened on white."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit greyscale: scale to 8 bits (a plain convert would clip everything above 255 to white).
        image = image.convert("I").point(lambda value: value / 256).convert("L")

    alpha: Image.Image | None = None
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        alpha = rgba.getchannel("A")
        image = image.convert("L") if image.mode in ("L", "LA", "La") else rgba.convert("RGB")
    elif image.mode not in ("RGB", "L", "CMYK"):
        image = image.convert("RGB")

    if icc_profile:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
            converted = ImageCms.profileToProfile(
                image,
                source,
                _srgb_profile(),
                renderingIntent=ImageCms.Intent.PERCEPTUAL,
                outputMode="RGB",
            )
            if converted is not None:
                image = converted
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            pass  # an unusable profile: treat the pixels as sRGB, as browsers do
    image = image.convert("RGB")

    if alpha is not None:
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=alpha)
        image = background
    return image


@lru_cache(maxsize=1)
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@lru_cache(maxsize=1)
def _accepted_formats() -> tuple[str, ...]:
    """JPEG, PNG and WebP; HEIF (HEIC) too where a Pillow plugin (pillow-heif) has registered it."""
    Image.init()
    extra = tuple(fmt for fmt in HEIF_FORMATS if fmt in Image.OPEN)
    return SUPPORTED_FORMATS + extra


def _format_list(formats: tuple[str, ...]) -> str:
    names = [fmt if fmt != "WEBP" else "WebP" for fmt in formats]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


# -- perceptual hash -------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _dct_matrix(size: int) -> npt.NDArray[np.float64]:
    """The orthonormal DCT-II matrix: D @ x is the DCT of the column vector x."""
    n = np.arange(size)
    matrix = np.cos(np.pi * (2 * n[None, :] + 1) * n[:, None] / (2 * size)) * np.sqrt(2.0 / size)
    matrix[0, :] = np.sqrt(1.0 / size)
    return matrix


def phash(image: Image.Image) -> str:
    """The 64-bit DCT perceptual hash of an image, as 16 hex characters.

    Greyscale, reduced to 32x32 with a Lanczos filter, 2-D DCT, keep the 8x8 lowest frequencies, and set
    each bit where a coefficient is above their median (the DC term is left out of the median, as it
    only measures brightness). Robust to re-encoding, resizing and mild colour changes.
    """
    grey = image.convert("L").resize((PHASH_SIZE, PHASH_SIZE), Image.Resampling.LANCZOS)
    pixels = np.asarray(grey, dtype=np.float64)
    dct = _dct_matrix(PHASH_SIZE)
    coefficients = dct @ pixels @ dct.T
    low = coefficients[:PHASH_LOW, :PHASH_LOW].flatten()
    median = float(np.median(low[1:]))
    value = 0
    for bit in low > median:
        value = (value << 1) | int(bit)
    return f"{value:016x}"


def phash_distance(a: str, b: str) -> int:
    """The number of differing bits between two perceptual hashes (0 to 64)."""
    if len(a) != 16 or len(b) != 16:
        raise ValueError(f"perceptual hashes are 16 hex characters, got {a!r} and {b!r}")
    return (int(a, 16) ^ int(b, 16)).bit_count()


def is_near_duplicate(a: str, b: str, *, threshold: int = DEFAULT_NEAR_DUPLICATE_THRESHOLD) -> bool:
    """Whether two perceptual hashes are within threshold bits: the same photo, re-encoded or resized."""
    return phash_distance(a, b) <= threshold
