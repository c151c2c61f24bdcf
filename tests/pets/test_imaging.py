"""Photo sanitising, on the real DreamBooth pet photos and on hostile inputs built here."""

from __future__ import annotations

import hashlib
import io
import itertools
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import ExifTags, Image, ImageCms, ImageFile, PngImagePlugin

from petportrait.pets.imaging import (
    DEFAULT_NEAR_DUPLICATE_THRESHOLD,
    PhotoRejected,
    SanitizedPhoto,
    is_near_duplicate,
    phash_distance,
    sanitize_photo,
    validate_filename,
)

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "dreambooth-pets"
PHOTOS = sorted(DATA.glob("*/*.jpg"))
XMP_NAMESPACE = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_PACKET = (
    b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
    b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="52,31.2N" '
    b'exif:GPSLongitude="13,24.6E"/></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
)

pytestmark = pytest.mark.skipif(not PHOTOS, reason=f"no test photos under {DATA}")


# -- helpers ---------------------------------------------------------------------------------------


def sanitize(data: bytes, **kwargs: object) -> SanitizedPhoto:
    options: dict[str, object] = {"filename": "photo.jpg", "content_type": "image/jpeg"} | kwargs
    return sanitize_photo(data, **options)  # type: ignore[arg-type]


def rejection(data: bytes, **kwargs: object) -> str:
    with pytest.raises(PhotoRejected) as caught:
        sanitize(data, **kwargs)
    assert caught.value.detail  # a person can read why
    return caught.value.code


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def photo(index: int = 0, size: tuple[int, int] | None = None) -> Image.Image:
    image = Image.open(PHOTOS[index])
    image.load()
    return image.resize(size, Image.Resampling.LANCZOS) if size else image


def jpeg_segments(data: bytes) -> Iterator[tuple[int, bytes]]:
    """The (marker, payload) of every JPEG segment before the image data starts."""
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    pos = 2
    while pos < len(data):
        assert data[pos] == 0xFF
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            return
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        yield marker, data[pos + 4 : pos + 2 + length]
        pos += 2 + length


def insert_jpeg_segment(data: bytes, marker: int, payload: bytes) -> bytes:
    """The JPEG with one more segment right after SOI."""
    segment = bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload
    return data[:2] + segment + data[2:]


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but whose data holds one pixel."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixel = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", pixel)
        + png_chunk(b"IEND", b"")
    )


def gps_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneCorp"
    exif[ExifTags.Base.Model] = "Phone 12"
    exif[ExifTags.Base.BodySerialNumber] = "SN-0042-SECRET"
    exif[ExifTags.Base.DateTime] = "2024:05:01 10:11:12"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (52.0, 31.0, 12.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (13.0, 24.0, 36.0)
    return exif


def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def swapped_primaries_icc() -> bytes:
    """An RGB profile whose red and blue primaries trade places: stored red means displayed blue."""
    profile = bytearray(srgb_icc())
    count = struct.unpack(">I", profile[128:132])[0]
    entries = {bytes(profile[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    red, blue = entries[b"rXYZ"], entries[b"bXYZ"]
    profile[red + 4 : red + 12], profile[blue + 4 : blue + 12] = (
        profile[blue + 4 : blue + 12],
        profile[red + 4 : red + 12],
    )
    return bytes(profile)


def assert_no_metadata(data: bytes) -> None:
    """No EXIF, GPS, XMP, ICC or comment, by Pillow's reading and by the raw bytes."""
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        assert len(image.getexif()) == 0
        assert image.getexif().get_ifd(ExifTags.IFD.GPSInfo) == {}
        for key in ("exif", "icc_profile", "xmp", "comment", "photoshop", "adobe"):
            assert key not in image.info, key
    for needle in (b"Exif", b"http://ns.adobe.com/xap", b"ICC_PROFILE", b"PhoneCorp", b"SN-0042", b"GPS"):
        assert needle not in data, needle
    markers = [marker for marker, _ in jpeg_segments(data)]
    assert 0xFE not in markers  # COM
    assert not [m for m in markers if 0xE1 <= m <= 0xEF]  # APP1..APP15 (EXIF, XMP, ICC, Photoshop...)


@pytest.fixture(scope="module")
def cleaned() -> dict[str, SanitizedPhoto]:
    """Every photo of the data set, sanitised once."""
    return {f"{p.parent.name}/{p.name}": sanitize(p.read_bytes()) for p in PHOTOS}


# -- the output ------------------------------------------------------------------------------------


def test_a_real_photo_comes_out_as_a_clean_jpeg_with_its_hashes(cleaned: dict[str, SanitizedPhoto]) -> None:
    for name, clean in cleaned.items():
        source = Image.open(DATA / name)
        assert (clean.width, clean.height) == source.size
        assert clean.content_type == "image/jpeg"
        assert clean.extension == "jpg"
        assert clean.sha256 == hashlib.sha256(clean.data).hexdigest()
        assert len(clean.phash) == 16
        int(clean.phash, 16)
        with Image.open(io.BytesIO(clean.data)) as out:
            assert (out.format, out.mode, out.size) == ("JPEG", "RGB", source.size)
        assert_no_metadata(clean.data)


def test_sanitising_is_deterministic() -> None:
    data = PHOTOS[0].read_bytes()
    first, second = sanitize(data), sanitize(data)
    assert first == second


def test_the_claimed_name_and_type_do_not_decide_what_a_file_is() -> None:
    png = encode(photo(1, (400, 400)), "PNG")
    clean = sanitize(png, filename="holiday.gif", content_type="application/pdf")
    assert clean.content_type == "image/jpeg"
    assert (clean.width, clean.height) == (400, 400)
    assert sanitize(png, filename=None, content_type=None).sha256 == clean.sha256


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_gps_xmp_icc_and_comments_are_stripped(fmt: str) -> None:
    image = photo(0, (640, 480))
    exif = gps_exif()
    if fmt == "JPEG":
        data = encode(image, "JPEG", exif=exif, icc_profile=srgb_icc(), comment=b"shot at home, 5 Elm St")
        data = insert_jpeg_segment(data, 0xE1, XMP_NAMESPACE + XMP_PACKET)
        segments = [payload[:30] for marker, payload in jpeg_segments(data)]
        assert any(p.startswith(b"Exif\x00\x00") for p in segments)
        assert any(p.startswith(b"http://ns.adobe.com/xap/1.0/") for p in segments)
    elif fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", XMP_PACKET.decode())
        info.add_text("Comment", "shot at home, 5 Elm St")
        data = encode(image, "PNG", exif=exif, icc_profile=srgb_icc(), pnginfo=info)
    else:
        data = encode(image, "WEBP", exif=exif, icc_profile=srgb_icc(), xmp=XMP_PACKET, quality=95)
    with Image.open(io.BytesIO(data)) as source:  # the input really carries all of it
        assert source.getexif().get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitudeRef] == "N"
        assert "icc_profile" in source.info
    xmp_marker = {"JPEG": b"http://ns.adobe.com/xap/1.0/", "PNG": b"XML:com.adobe.xmp", "WEBP": b"XMP "}[fmt]
    assert xmp_marker in data

    clean = sanitize(data)
    assert_no_metadata(clean.data)
    assert (clean.width, clean.height) == (640, 480)


def test_orientation_6_is_applied_to_the_pixels() -> None:
    # Stored 400 wide and 300 high, in four coloured quarters; orientation 6 means "turn 90 degrees
    # clockwise to view", so the output is 300 wide and 400 high with the quarters moved round.
    stored = Image.new("RGB", (400, 300))
    for box, colour in (
        ((0, 0, 200, 150), (255, 0, 0)),  # top left: red
        ((200, 0, 400, 150), (0, 255, 0)),  # top right: green
        ((0, 150, 200, 300), (0, 0, 255)),  # bottom left: blue
        ((200, 150, 400, 300), (255, 255, 255)),  # bottom right: white
    ):
        stored.paste(colour, box)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    clean = sanitize(encode(stored, "JPEG", exif=exif, quality=95))

    assert (clean.width, clean.height) == (300, 400)
    upright = Image.open(io.BytesIO(clean.data)).convert("RGB")
    expected = {
        (225, 100): (255, 0, 0),  # red: top left -> top right
        (225, 300): (0, 255, 0),  # green: top right -> bottom right
        (75, 100): (0, 0, 255),  # blue: bottom left -> top left
        (75, 300): (255, 255, 255),  # white: bottom right -> bottom left
    }
    for xy, colour in expected.items():
        pixel = upright.getpixel(xy)
        assert isinstance(pixel, tuple)
        assert all(abs(a - b) <= 12 for a, b in zip(pixel, colour, strict=True)), (xy, pixel, colour)
    assert_no_metadata(clean.data)  # and the orientation tag went with the rest


def test_a_real_photo_with_orientation_8_comes_out_turned() -> None:
    image = photo(5, (500, 300))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 8  # turn 90 degrees counter-clockwise to view
    clean = sanitize(encode(image, "JPEG", exif=exif, quality=95))
    assert (clean.width, clean.height) == (300, 500)
    turned = sanitize(encode(image.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95))
    assert phash_distance(clean.phash, turned.phash) <= 2


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
def test_a_malformed_exif_block_is_dropped_not_fatal() -> None:
    data = encode(photo(3, (400, 300)), "JPEG")
    data = insert_jpeg_segment(data, 0xE1, b"Exif\x00\x00MM\x00\x2a\xff\xff\xff\xf0garbage" * 4)
    clean = sanitize(data)
    assert (clean.width, clean.height) == (400, 300)
    assert_no_metadata(clean.data)


def test_an_icc_profile_is_applied_to_the_colours_then_dropped() -> None:
    red = Image.new("RGB", (300, 300), (220, 20, 20))
    plain = sanitize(encode(red, "PNG"))
    profiled = sanitize(encode(red, "PNG", icc_profile=swapped_primaries_icc()))
    plain_pixel = Image.open(io.BytesIO(plain.data)).getpixel((150, 150))
    profiled_pixel = Image.open(io.BytesIO(profiled.data)).getpixel((150, 150))
    assert isinstance(plain_pixel, tuple) and isinstance(profiled_pixel, tuple)
    assert plain_pixel[0] > 200 and plain_pixel[2] < 40  # no profile: taken as sRGB, stays red
    assert profiled_pixel[2] > profiled_pixel[0] + 100  # the profile said this "red" is blue
    assert_no_metadata(profiled.data)


def test_an_srgb_profile_leaves_the_colours_alone() -> None:
    image = photo(2, (400, 400))
    plain = Image.open(io.BytesIO(sanitize(encode(image, "PNG")).data))
    tagged = Image.open(io.BytesIO(sanitize(encode(image, "PNG", icc_profile=srgb_icc())).data))
    difference = [abs(a - b) for a, b in zip(plain.tobytes(), tagged.tobytes(), strict=True)]
    assert sum(difference) / len(difference) < 2


def test_a_broken_icc_profile_is_ignored_not_fatal() -> None:
    clean = sanitize(encode(photo(3, (300, 300)), "PNG", icc_profile=b"not a profile at all" * 10))
    assert_no_metadata(clean.data)


def test_transparency_is_flattened_onto_white() -> None:
    image = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    image.paste((200, 0, 0, 255), (0, 0, 150, 300))
    clean = sanitize(encode(image, "PNG"))
    out = Image.open(io.BytesIO(clean.data))
    assert out.mode == "RGB"
    left, right = out.getpixel((70, 150)), out.getpixel((230, 150))
    assert isinstance(left, tuple) and isinstance(right, tuple)
    assert left[0] > 180 and left[1] < 30
    assert min(right) > 245

    palette = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    palette.info["transparency"] = palette.getpixel((230, 150))
    out = Image.open(
        io.BytesIO(sanitize(encode(palette, "PNG", transparency=palette.info["transparency"])).data)
    )
    assert min(out.getpixel((230, 150))) > 245  # type: ignore[arg-type]


def test_cmyk_and_16_bit_grey_come_out_as_rgb() -> None:
    cmyk = sanitize(encode(photo(4, (300, 300)).convert("CMYK"), "JPEG"))
    assert Image.open(io.BytesIO(cmyk.data)).mode == "RGB"

    grey16 = Image.new("I;16", (300, 300), 32768)  # mid grey in 16 bits
    out = Image.open(io.BytesIO(sanitize(encode(grey16, "PNG")).data))
    pixel = out.getpixel((150, 150))
    assert isinstance(pixel, tuple)
    assert all(120 <= channel <= 136 for channel in pixel)  # mid grey, not clipped to white


# -- near duplicates -------------------------------------------------------------------------------


def resized_copy(data: bytes, *, scale: float = 0.8, quality: int = 70) -> bytes:
    image = Image.open(io.BytesIO(data))
    size = (round(image.width * scale), round(image.height * scale))
    return encode(image.resize(size, Image.Resampling.LANCZOS), "JPEG", quality=quality)


def test_a_resized_recompressed_copy_is_a_near_duplicate(cleaned: dict[str, SanitizedPhoto]) -> None:
    distances = []
    for clean in cleaned.values():
        copy = sanitize(resized_copy(clean.data, scale=0.8, quality=70))
        assert copy.sha256 != clean.sha256  # not the same bytes...
        assert is_near_duplicate(clean.phash, copy.phash)  # ...but the same photo
        distances.append(phash_distance(clean.phash, copy.phash))
    # Measured: at most 2 bits; the default threshold of 6 leaves a margin of 4.
    assert max(distances) <= DEFAULT_NEAR_DUPLICATE_THRESHOLD // 2


def test_every_two_different_photos_are_far_apart(cleaned: dict[str, SanitizedPhoto]) -> None:
    distances = {
        (a, b): phash_distance(cleaned[a].phash, cleaned[b].phash)
        for a, b in itertools.combinations(cleaned, 2)
    }
    assert len(distances) == len(PHOTOS) * (len(PHOTOS) - 1) // 2
    for (a, b), distance in distances.items():
        assert not is_near_duplicate(cleaned[a].phash, cleaned[b].phash), (a, b, distance)
    # Measured: 16 bits at the least (two photos of the same dog), 20 between different animals; twice
    # the threshold leaves room for photos closer than any in this set.
    assert min(distances.values()) >= 2 * DEFAULT_NEAR_DUPLICATE_THRESHOLD
    across = [d for (a, b), d in distances.items() if a.split("/")[0] != b.split("/")[0]]
    assert min(across) >= 3 * DEFAULT_NEAR_DUPLICATE_THRESHOLD


def test_phash_distance_counts_differing_bits() -> None:
    assert phash_distance("0000000000000000", "0000000000000000") == 0
    assert phash_distance("0000000000000000", "ffffffffffffffff") == 64
    assert phash_distance("8000000000000001", "0000000000000000") == 2
    assert is_near_duplicate("00000000000000ff", "0000000000000000", threshold=8)
    assert not is_near_duplicate("00000000000001ff", "0000000000000000", threshold=8)
    with pytest.raises(ValueError):
        phash_distance("abc", "0000000000000000")


# -- rejections ------------------------------------------------------------------------------------


def test_empty_bytes_are_rejected() -> None:
    assert rejection(b"") == "empty_file"


def test_too_many_bytes_are_rejected_before_anything_is_parsed() -> None:
    assert rejection(b"\x00" * (20 * 1024 * 1024 + 1)) == "file_too_large"
    data = PHOTOS[0].read_bytes()
    assert rejection(data, max_bytes=len(data) - 1) == "file_too_large"
    assert sanitize(data, max_bytes=len(data)).width > 0


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"Dear diary, today the dog ate my homework.\n" * 20, id="text"),
        pytest.param(b"<svg xmlns='http://www.w3.org/2000/svg' width='900' height='900'/>", id="svg"),
        pytest.param(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", id="pdf"),
        pytest.param(bytes(range(256)) * 8, id="noise"),
    ],
)
def test_bytes_that_are_not_an_image_are_rejected(data: bytes) -> None:
    assert rejection(data, filename="cute.jpg", content_type="image/jpeg") == "not_an_image"


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "ICO", "PPM", "JPEG2000", "AVIF"])
def test_formats_other_than_jpeg_png_webp_are_rejected(fmt: str) -> None:
    try:
        data = encode(photo(0, (300, 300)), fmt)
    except (KeyError, OSError) as exc:
        pytest.skip(f"this Pillow cannot write {fmt}: {exc}")
    assert rejection(data) == "unsupported_format"


def test_a_phone_jpeg_with_extra_pictures_is_taken_as_its_first_picture() -> None:
    main, extra = photo(0, (400, 300)), photo(1, (400, 300))
    data = encode(main, "MPO", save_all=True, append_images=[extra], quality=95)
    with Image.open(io.BytesIO(data)) as check:
        assert (check.format, getattr(check, "n_frames", 1)) == ("MPO", 2)
    clean = sanitize(data)
    alone = sanitize(encode(main, "JPEG", quality=95))
    assert (clean.width, clean.height) == (400, 300)
    assert phash_distance(clean.phash, alone.phash) <= 2
    assert_no_metadata(clean.data)


@pytest.mark.parametrize(
    ("width", "height"),
    [
        pytest.param(100_000, 100_000, id="over-pillow-error-limit"),
        pytest.param(10_000, 10_000, id="over-pillow-warning-limit"),
        pytest.param(8_000, 8_000, id="over-max-pixels"),
    ],
)
def test_a_header_claiming_too_many_pixels_is_rejected_before_decoding(width: int, height: int) -> None:
    data = png_claiming(width, height)
    assert len(data) < 100
    # Had the pixels been decoded, the one-pixel data would have been reported as corrupt_image: the answer
    # itself shows the order, so no time is measured (a wall-clock bound failed on a busy machine).
    assert rejection(data) == "decompression_bomb"


def test_pillows_own_bomb_limit_holds_even_when_max_pixels_is_set_higher() -> None:
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < 10_000 * 10_000
    assert rejection(png_claiming(10_000, 10_000), max_pixels=10**12) == "decompression_bomb"
    assert rejection(png_claiming(100_000, 100_000), max_pixels=10**12) == "decompression_bomb"
    assert rejection(png_claiming(1_000, 1_000), max_pixels=10**12) == "corrupt_image"  # a small lie


def test_max_pixels_is_a_parameter() -> None:
    data = encode(photo(0, (600, 500)), "JPEG")
    assert rejection(data, max_pixels=600 * 500 - 1) == "decompression_bomb"
    assert sanitize(data, max_pixels=600 * 500).width == 600


def test_animated_images_are_rejected() -> None:
    frames = [photo(0, (300, 300)), photo(1, (300, 300))]
    for fmt in ("GIF", "PNG", "WEBP"):
        data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
        with Image.open(io.BytesIO(data)) as check:
            assert getattr(check, "n_frames", 1) == 2, fmt
        assert rejection(data) == "animated_image", fmt


def test_truncated_or_damaged_images_are_rejected() -> None:
    jpeg = PHOTOS[0].read_bytes()
    assert rejection(jpeg[: len(jpeg) // 2]) == "corrupt_image"
    assert rejection(jpeg[: len(jpeg) - 300]) == "corrupt_image"
    assert rejection(jpeg[:3]) == "corrupt_image"  # the magic bytes alone
    assert rejection(jpeg[:200]) == "corrupt_image"  # cut inside the header

    png = encode(photo(1, (400, 400)), "PNG")
    assert rejection(png[: len(png) * 2 // 3]) == "corrupt_image"
    damaged = bytearray(png)
    idat = png.index(b"IDAT")
    damaged[idat + 200 : idat + 240] = b"\x00" * 40  # data that no longer matches its CRC
    assert rejection(bytes(damaged)) == "corrupt_image"

    webp = encode(photo(2, (400, 400)), "WEBP")
    assert rejection(webp[: len(webp) // 2]) == "corrupt_image"


def test_truncated_images_are_never_let_through_by_a_global_pillow_switch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        sanitize(PHOTOS[0].read_bytes())


@pytest.mark.parametrize(("size", "fmt"), [((200, 200), "PNG"), ((1000, 200), "JPEG"), ((255, 4000), "WEBP")])
def test_images_with_a_short_side_under_the_minimum_are_rejected(size: tuple[int, int], fmt: str) -> None:
    assert rejection(encode(photo(0, size), fmt)) == "image_too_small"


def test_the_minimum_side_is_measured_after_orientation_and_is_a_parameter() -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    data = encode(photo(0, (600, 300)), "JPEG", exif=exif)
    assert rejection(data, min_side=301) == "image_too_small"
    clean = sanitize(data, min_side=300)
    assert (clean.width, clean.height) == (300, 600)


BAD_FILENAMES = [
    pytest.param(None, id="none"),
    pytest.param("", id="empty"),
    pytest.param("   ", id="blank"),
    pytest.param(".", id="dot"),
    pytest.param("..", id="dotdot"),
    pytest.param("../../etc/passwd", id="traversal"),
    pytest.param("photos/cat.jpg", id="slash"),
    pytest.param("..\\..\\boot.ini", id="backslash"),
    pytest.param("C:\\Users\\cat.jpg", id="windows-path"),
    pytest.param("cat\x00.jpg", id="nul"),
    pytest.param("cat\n.jpg", id="newline"),
    pytest.param("cat\x1b[31m.jpg", id="escape"),
    pytest.param("cat\x7f.jpg", id="delete"),
    pytest.param("\u202egpj.exe", id="bidi-override"),
    pytest.param("x" * 252 + ".jpg", id="256-chars"),
]


@pytest.mark.parametrize("name", BAD_FILENAMES)
def test_bad_filenames_are_rejected(name: str | None) -> None:
    with pytest.raises(PhotoRejected) as caught:
        validate_filename(name)
    assert caught.value.code == "invalid_filename"
    if name is not None:  # sanitize_photo checks a name when one is given
        assert rejection(PHOTOS[0].read_bytes(), filename=name) == "invalid_filename"


@pytest.mark.parametrize("name", ["cat.jpg", "IMG_0042.JPEG", "Mütze am Strand (2).jpg", "猫.png", "x" * 255])
def test_ordinary_filenames_are_kept(name: str) -> None:
    assert validate_filename(name) == name


def test_a_rejection_is_a_value_error_with_code_and_detail() -> None:
    error = PhotoRejected("image_too_small", "too small")
    assert isinstance(error, ValueError)
    assert (error.code, error.detail) == ("image_too_small", "too small")
