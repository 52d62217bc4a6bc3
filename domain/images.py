"""Image validation (in the web process, before anything is stored) and decoding (in workers).

Accepted: JPEG, PNG and WebP, recognised by their magic bytes, not by the name or the
declared content type. EXIF orientation is applied before detection. Palette, alpha,
CMYK, grayscale and 16-bit images are converted to 8-bit RGB.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from config import get_settings
from domain.errors import InvalidImage

# Formats we accept, by magic bytes, with their canonical content type.
_ACCEPTED = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
# Formats we recognise only to give a precise rejection message.
_REJECTED_MAGIC = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"),
)


@dataclass(frozen=True)
class ImageInfo:
    format: str  # JPEG | PNG | WEBP
    content_type: str
    width: int  # after EXIF orientation
    height: int


def sniff_format(data: bytes) -> str | None:
    """The format the bytes really are, from their magic number."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _describe_unsupported(data: bytes) -> str:
    for magic, name in _REJECTED_MAGIC:
        if data.startswith(magic):
            return name
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif", b"ftyphevc"):
        return "HEIC/AVIF"
    head = data[:256].lstrip().lower()
    if head.startswith(b"<?xml") or head.startswith(b"<svg"):
        return "SVG"
    return "unknown"


def _open(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Our own pixel limit below is the guard; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise InvalidImage("image_too_large", "The image has too many pixels.") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InvalidImage("invalid_image", "The file could not be read as an image.") from exc


def validate_image(data: bytes, declared_type: str | None = None) -> ImageInfo:
    """Check an upload completely (it is decoded once) and describe it; raise InvalidImage if unfit."""
    settings = get_settings()
    if not data:
        raise InvalidImage("empty_file", "The uploaded file is empty.")
    if len(data) > settings.max_upload_bytes:
        raise InvalidImage("file_too_large", f"The image is larger than {settings.max_upload_bytes} bytes.", status=413)
    fmt = sniff_format(data)
    if fmt is None:
        kind = _describe_unsupported(data)
        raise InvalidImage(
            "unsupported_media_type",
            f"Unsupported image format ({kind}); send JPEG, PNG or WebP.",
            status=415,
        )
    declared = (declared_type or "").split(";")[0].strip().lower()
    if declared.startswith("image/") and declared != _ACCEPTED[fmt] and declared != "image/jpg":
        raise InvalidImage("content_type_mismatch", f"The file is {fmt} but was declared as {declared}.")
    image = _open(data)
    if (image.format or "").upper() != fmt:
        raise InvalidImage("invalid_image", "The file could not be read as an image.")
    width, height = image.size
    if width * height > settings.max_image_pixels:
        raise InvalidImage(
            "image_too_large",
            f"The image has {width}x{height} pixels; at most {settings.max_image_pixels} are accepted.",
        )
    if getattr(image, "n_frames", 1) > 1:
        raise InvalidImage("animated_image", "Animated images are not accepted; send a single frame.")
    try:
        image.load()  # decodes everything: truncated or corrupt data fails here, not in a worker
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidImage("invalid_image", "The image data is truncated or corrupt.") from exc
    if min(width, height) < settings.min_image_side:
        raise InvalidImage(
            "image_too_small", f"The image must be at least {settings.min_image_side} pixels on each side."
        )
    if _exif_orientation(image) in (5, 6, 7, 8):
        width, height = height, width
    return ImageInfo(format=fmt, content_type=_ACCEPTED[fmt], width=width, height=height)


def _exif_orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block only means "no rotation"
        return 1


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit (or 32-bit integer) grayscale: scale to 8 bits instead of clipping to white.
        array = np.asarray(image, dtype=np.float64)
        peak = array.max() if array.size else 0
        scale = 255.0 / peak if peak > 255 else 1.0
        image = Image.fromarray(np.clip(array * scale, 0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        # Transparent areas become white rather than black, which suits detectors better.
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")


def decode_bgr(data: bytes) -> np.ndarray:
    """Decode validated bytes to an upright 8-bit BGR array, the layout InsightFace expects."""
    image = _open(data)
    image = ImageOps.exif_transpose(image)
    rgb = np.asarray(_to_rgb(image))
    return np.ascontiguousarray(rgb[:, :, ::-1])
