"""Image builders for upload tests."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image


def jpeg_bytes(path: Path, *, scale: float = 1.0, exif: Image.Exif | None = None, quality: int = 90) -> bytes:
    """A photo re-saved as JPEG, optionally scaled and with EXIF."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        if scale != 1.0:
            img = img.resize((int(img.width * scale), int(img.height * scale)))
        out = io.BytesIO()
        if exif is not None:
            img.save(out, "JPEG", quality=quality, exif=exif)
        else:
            img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def gps_exif(orientation: int | None = None) -> Image.Exif:
    """EXIF with a camera model, a GPS position and optionally an orientation."""
    exif = Image.Exif()
    exif[0x0110] = "SecretCam 3000"  # Model
    if orientation is not None:
        exif[0x0112] = orientation
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (51.0, 30.0, 12.5)
    gps[3] = "W"
    gps[4] = (0.0, 7.0, 39.0)
    return exif


def solid_png(width: int, height: int, colour: tuple[int, int, int] = (120, 80, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()
