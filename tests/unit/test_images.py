"""Image validation and decoding (pure functions; no services needed)."""

from __future__ import annotations

import functools
import io
import random

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from config import get_settings
from domain import images as domain_images
from domain.errors import InvalidImage
from domain.images import (
    ImageInfo,
    _exif_orientation,
    _open,
    _pillow_decode,
    _turbo_bgr,
    decode,
    decode_bgr,
    from_photo,
    reduction_for,
    to_photo,
)
from tests import images


def validate_image(data: bytes, declared_type: str | None = None) -> ImageInfo:
    """The upload check with this run's settings (their default limits)."""
    return domain_images.validate_image(data, declared_type, settings=get_settings())


def _png(image: Image.Image) -> bytes:
    return images.encode(image, "PNG")


def test_cmyk_jpeg_is_converted_to_rgb():
    data = images.encode(Image.new("CMYK", (64, 48), (0, 255, 255, 0)), "JPEG")  # red in CMYK
    assert validate_image(data).format == "JPEG"
    bgr = decode_bgr(data)
    assert bgr.shape == (48, 64, 3)
    b, g, r = bgr[24, 32]
    assert r > 200 and g < 60 and b < 60


def test_16_bit_grayscale_is_scaled_not_clipped():
    array = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    data = _png(Image.fromarray(array))
    bgr = decode_bgr(data)
    assert bgr.dtype == np.uint8
    assert bgr.min() < 10 and 200 < bgr.max() <= 255  # a full range, not all white
    assert (bgr[:, :, 0] == bgr[:, :, 2]).all()


def test_palette_with_transparency_becomes_white_background():
    image = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    image.paste((0, 0, 255, 255), (10, 10, 30, 30))
    data = _png(image.convert("P"))
    bgr = decode_bgr(data)
    assert tuple(bgr[0, 0]) == (255, 255, 255)
    assert tuple(bgr[20, 20]) == (255, 0, 0)  # blue in BGR


def test_alpha_png_is_composited():
    image = Image.new("RGBA", (40, 40), (0, 255, 0, 0))
    bgr = decode_bgr(_png(image))
    assert tuple(bgr[5, 5]) == (255, 255, 255)


def test_exif_orientation_is_applied_before_anything_else():
    image = Image.new("RGB", (80, 40), "white")
    image.paste((255, 0, 0), (0, 0, 10, 40))  # a red band on the left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif, quality=95)
    data = buffer.getvalue()
    info = validate_image(data)
    assert (info.width, info.height) == (40, 80)
    bgr = decode_bgr(data)
    assert bgr.shape[:2] == (80, 40)
    assert bgr[2, 20, 2] > 200 and bgr[2, 20, 0] < 80  # the red band is now on top


def test_webp_is_accepted():
    data = images.encode(Image.new("RGB", (64, 64), "gray"), "WEBP")
    assert validate_image(data, "image/webp").content_type == "image/webp"


@pytest.mark.parametrize(
    ("fmt", "declared", "real_type"),
    [("JPEG", "image/png", "image/jpeg"), ("JPEG", "image/gif", "image/jpeg"), ("PNG", "image/jpeg", "image/png")],
)
def test_the_bytes_decide_the_type_not_the_declared_one(fmt, declared, real_type):
    # Issue 12 item 7: curl, httpx and browsers guess the type from the file name; the bytes are
    # validated anyway, so a PNG named x.jpg is accepted as the PNG it is.
    data = images.encode(Image.new("RGB", (64, 64)), fmt)
    info = validate_image(data, declared)
    assert (info.format, info.content_type) == (fmt, real_type)


def test_generic_declared_type_is_fine():
    data = images.encode(Image.new("RGB", (64, 64)), "JPEG")
    assert validate_image(data, "application/octet-stream").format == "JPEG"


# Reduced-scale decoding: the web process validates JPEGs at 1/8 scale and workers decode them
# at the coarsest scale the detector allows. A synthetic photo, never a real face.


@functools.cache
def _photo(width: int = 1024, height: int = 768) -> Image.Image:
    """A gradient with detail and noise: compresses like a photo, and has no symmetry."""
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    pixels = 0.6 * x + 0.4 * y + np.random.default_rng(3).normal(0, 20, (height, width, 3))
    pixels[: height // 4, : width // 8] = (255, 0, 0)  # a red block in the top-left corner
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def _jpeg(progressive: bool = False, size: tuple[int, int] = (1024, 768)) -> bytes:
    return images.encode(_photo(*size), "JPEG", quality=90, progressive=progressive)


def _outcome(check, data: bytes) -> str:
    try:
        check(data)
    except (InvalidImage, OSError, ValueError, SyntaxError):
        return "refused"
    return "accepted"


def _full_decode(data: bytes) -> None:
    """What validation did before: decode every pixel at full size."""
    Image.open(io.BytesIO(data)).load()


@pytest.mark.parametrize("progressive", [False, True])
def test_truncated_jpeg_is_still_refused(progressive):
    data = _jpeg(progressive)
    for cut in (len(data) // 10, len(data) // 2, len(data) - 1000, len(data) - 2):
        with pytest.raises(InvalidImage) as error:
            validate_image(data[:cut])
        assert error.value.code == "invalid_image", cut


@pytest.mark.parametrize("progressive", [False, True])
def test_validation_refuses_exactly_what_a_full_decode_refuses(progressive):
    """Truncations at many points and random byte corruptions: the 1/8-scale check and a full
    decode agree on every file (libjpeg reads the whole entropy-coded stream either way)."""
    data = _jpeg(progressive, size=(512, 384))
    rng = random.Random(11)
    cases = [data[:cut] for cut in range(200, len(data), len(data) // 40)]
    for _ in range(120):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            mutated[rng.randrange(2, len(mutated))] = rng.randrange(256)
        cases.append(bytes(mutated))
    outcomes = [(_outcome(validate_image, case), _outcome(_full_decode, case)) for case in cases]
    assert all(ours == full for ours, full in outcomes)
    assert {"refused"} < {ours for ours, _ in outcomes}  # both kinds of case occur
    assert "accepted" in {ours for ours, _ in outcomes}


def test_corrupt_jpeg_header_is_refused():
    data = bytearray(_jpeg())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = b"\x00\x00\x00\x00"  # zero width and height
    with pytest.raises(InvalidImage) as error:
        validate_image(bytes(data))
    assert error.value.code == "invalid_image"


def test_validation_decodes_a_jpeg_at_one_eighth_scale(monkeypatch):
    sizes = []
    load = ImageFile.ImageFile.load

    def spy(image):
        sizes.append(image.size)
        return load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    info = validate_image(_jpeg())
    assert (info.width, info.height) == (1024, 768)
    assert sizes == [(128, 96)]


@pytest.mark.parametrize(
    ("long_side", "minimum", "max_scale", "expected"),
    [
        (7360, 1280, 8, 4),  # 36 MP: 1840 px
        (5184, 1280, 8, 4),  # 1296 px
        (4032, 1280, 8, 2),  # 1008 would be too few
        (1880, 1280, 8, 1),
        (10240, 1280, 8, 8),
        (7360, 1280, 2, 2),  # capped by max_scale
        (7360, 0, 8, 8),
    ],
)
def test_reduction_keeps_the_minimum_long_side(long_side, minimum, max_scale, expected):
    assert reduction_for(long_side, minimum, max_scale) == expected


def test_reduced_decode_is_the_photo_at_a_quarter_size():
    data = _jpeg()
    full, reduced = decode(data), decode(data, min_long_side=256)
    assert (full.scale, reduced.scale) == (1, 4)
    assert reduced.bgr.shape == (192, 256, 3) and reduced.bgr.flags.c_contiguous
    shrunk = np.asarray(Image.fromarray(full.bgr).reduce(4), dtype=np.float64)
    assert np.abs(shrunk - reduced.bgr).mean() < 3  # the same picture, averaged over 4x4 blocks
    assert np.array_equal(decode(data, min_long_side=300).bgr.shape, (384, 512, 3))  # 256 < 300


def test_non_jpeg_is_decoded_in_full_whatever_the_minimum():
    decoded = decode(images.encode(_photo(), "PNG"), min_long_side=128)
    assert decoded.scale == 1 and decoded.bgr.shape == (768, 1024, 3)


def test_coordinates_map_between_scales():
    points = np.array([[0.0, 0.0], [10.5, 3.25], [255.0, 191.0]])
    assert np.allclose(from_photo(to_photo(points, 4), 4), points)
    assert np.allclose(to_photo([0.0, 1.0], 4), [1.5, 5.5])  # centres of the 4x4 blocks
    assert np.allclose(to_photo(points, 1), points)


def _with_orientation(data_image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return images.encode(data_image, "JPEG", quality=95, exif=exif)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillow(orientation):
    data = _with_orientation(_photo(256, 192), orientation)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data)).convert("RGB")))[:, :, ::-1]
    assert np.array_equal(decode_bgr(data), expected)


@pytest.mark.parametrize("orientation", [6, 8])
def test_reduced_decode_is_turned_upright_too(orientation):
    data = _with_orientation(_photo(), orientation)
    info = validate_image(data)
    decoded = decode(data, min_long_side=256)
    assert (info.width, info.height) == (768, 1024)
    assert decoded.scale == 4 and decoded.bgr.shape == (256, 192, 3)
    full = decode_bgr(data)
    shrunk = np.asarray(Image.fromarray(full).reduce(4), dtype=np.float64)
    assert np.abs(shrunk - decoded.bgr).mean() < 3


def test_cmyk_jpeg_is_reduced_and_converted():
    data = images.encode(Image.new("CMYK", (1024, 768), (0, 255, 255, 0)), "JPEG")
    assert _turbo_bgr(data, _open(data), 8) is None  # Pillow converts CMYK
    decoded = decode(data, min_long_side=128)
    assert decoded.scale == 8 and decoded.bgr.shape == (96, 128, 3)
    b, g, r = decoded.bgr[48, 64]
    assert r > 200 and g < 60 and b < 60


def test_a_phone_photo_saved_as_mpo_is_accepted_as_the_jpeg_it_starts_with():
    """Many phones save MPO: a JPEG followed by more images (depth, a second lens)."""
    photo = Image.open(io.BytesIO(images.group_photo())).convert("RGB")
    buffer = io.BytesIO()
    photo.save(buffer, "MPO", save_all=True, append_images=[photo.resize((320, 240))], quality=90)
    data = buffer.getvalue()
    assert Image.open(io.BytesIO(data)).format == "MPO"
    info = validate_image(data)
    assert (info.format, info.content_type, info.width, info.height) == ("JPEG", "image/jpeg", *photo.size)
    assert decode_bgr(data).shape == (photo.height, photo.width, 3)


def _through_pillow(data: bytes, min_long_side: int) -> np.ndarray:
    """What decode() returned before JPEGs went through simplejpeg: Pillow's draft and conversion."""
    image = _open(data)
    return _pillow_decode(image, _exif_orientation(image), min_long_side, 8).bgr


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
@pytest.mark.parametrize("min_long_side", [0, 512, 256, 128])
@pytest.mark.parametrize("progressive", [False, True])
def test_jpegs_decode_to_the_same_pixels_as_through_pillow(orientation, min_long_side, progressive):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = images.encode(_photo(), "JPEG", quality=90, progressive=progressive, exif=exif)
    assert _turbo_bgr(data, _open(data), 1) is not None  # the libjpeg-turbo path, not Pillow's
    assert np.array_equal(decode(data, min_long_side=min_long_side).bgr, _through_pillow(data, min_long_side))


def test_a_grayscale_jpeg_decodes_as_pillow_converts_it():
    data = images.encode(_photo().convert("L"), "JPEG", quality=90)
    assert _turbo_bgr(data, _open(data), 1) is not None
    for minimum in (0, 256):
        decoded = decode(data, min_long_side=minimum).bgr
        assert decoded.shape[2] == 3 and np.array_equal(decoded, _through_pillow(data, minimum))


def test_a_jpeg_libjpeg_warns_about_still_decodes():
    """Bytes between the entropy-coded data and EOI make libjpeg warn ("extraneous bytes before
    marker"); Pillow, which validates uploads, ignores the warning, so decoding must too."""
    data = _jpeg()
    warned = data[:-2] + b"\x00\x00\x00" + data[-2:]
    assert validate_image(warned).format == "JPEG"
    assert _turbo_bgr(warned, _open(warned), 4) is not None
    assert np.array_equal(decode(warned, min_long_side=256).bgr, decode(data, min_long_side=256).bgr)
