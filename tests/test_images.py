"""Image validation and decoding (pure functions; no services needed)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from domain.errors import InvalidImage
from domain.images import decode_bgr, validate_image
from tests import images


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


@pytest.mark.parametrize("declared", ["image/png", "image/gif"])
def test_declared_type_mismatch(declared):
    data = images.encode(Image.new("RGB", (64, 64)), "JPEG")
    with pytest.raises(InvalidImage) as error:
        validate_image(data, declared)
    assert error.value.code == "content_type_mismatch"


def test_generic_declared_type_is_fine():
    data = images.encode(Image.new("RGB", (64, 64)), "JPEG")
    assert validate_image(data, "application/octet-stream").format == "JPEG"
