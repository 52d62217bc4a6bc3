"""Image validation (in the web process, before anything is stored) and decoding (in workers).

Accepted: JPEG, PNG and WebP, recognised by their magic bytes, not by the name or the
declared content type. EXIF orientation is applied before detection. Palette, alpha,
CMYK, grayscale and 16-bit images are converted to 8-bit RGB.

JPEGs are never decoded at full size unless needed: libjpeg can decode at 1/2, 1/4 or 1/8
scale in the DCT domain, skipping most of the inverse DCT, upsampling and colour conversion
(PERFORMANCE.md, "Decoding only the pixels the model needs").

Nothing is decoded before the headers (domain.image_headers) show what decoding will take, and
validation's decode at its peak must fit DECODE_MEMORY_BUDGET: what an 8-bit RGB photo at
MAX_IMAGE_PIXELS weighs (3 bytes a pixel, 120 MB). Each format's peak, in bytes a pixel, was
measured (tests/unit/test_decode_memory.py measures it again, in a child process): a baseline JPEG
decoded at 1/8 scale holds almost nothing; a progressive JPEG holds libjpeg's coefficient buffer
(2 bytes a coefficient of every component: 2 to 6 bytes a pixel); a PNG the image Pillow decodes
into (1 to 4 bytes a pixel); a WebP 16 (Pillow opens it through libwebp's animation decoder, which
allocates two canvases before the frame is decoded and copied). A worker's decode for the model
converts a PNG or WebP to 8-bit RGB and then to a BGR array (10 to 22 bytes a pixel) and may take
WORKER_DECODE_FACTOR times the budget. An image past either is refused `image_too_large` from its
header. A JPEG is refused `too_many_scans` past MAX_JPEG_SCANS: each
scan of a progressive JPEG is a pass over the whole image, and a few kilobytes of empty scans
(a "scan bomb") cost seconds of CPU; the job's cost counts its scans (domain.budget).
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from config import Settings
from domain.errors import InvalidImage, file_too_large
from domain.image_headers import HeaderError, read_jpeg_header, read_png_header, read_webp_header

# Formats we accept, by magic bytes, with their canonical content type.
_ACCEPTED = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
# What Pillow calls each: many phones save photos as MPO, a JPEG followed by further images
# (a depth map, a second lens); the first image is the photo, and that is what is read.
_PILLOW_FORMATS = {"JPEG": ("JPEG", "MPO"), "PNG": ("PNG",), "WEBP": ("WEBP",)}
# Formats we recognise only to give a precise rejection message.
_REJECTED_MAGIC = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"),
)
# The DCT scales libjpeg decodes at (1/8, 1/4, 1/2), coarsest first.
JPEG_SCALES = (8, 4, 2)
# Bytes validation's decode may hold at its peak: an 8-bit RGB photo at MAX_IMAGE_PIXELS.
DECODE_BYTES_PER_PIXEL = 3
# More scans than any camera or encoder writes (the photos measured, ../shared/datasets and
# insightface's, have at most 14; libjpeg's progressive default is 10, 6 for grey): past this a
# JPEG is a scan bomb, refused before decoding. Each scan is a pass over the whole image (36 Mpx:
# 4-25 ms of CPU even when nearly empty), so this also bounds a decode's time.
MAX_JPEG_SCANS = 32
# Peak bytes a pixel of a PNG's validation (Pillow's image: 1-bit, grey and palette 1 byte, 16-bit
# grey 2, everything else 4, RGB included), by IHDR colour type; 16-bit grey is (0, 16).
_PNG_PEAK_BYTES = {0: 1, (0, 16): 2, 2: 4, 3: 1, 4: 4, 6: 4}
# Peak bytes a pixel of a WebP's validation, measured 15.4 (lossy and lossless alike).
_WEBP_PEAK_BYTES = 16
# A worker decodes for the model (`decode`): a PNG or WebP whole, then converted to 8-bit RGB, then
# to a BGR array. Its peak may be WORKER_DECODE_FACTOR times validation's budget (one decode per job
# process, freed after it). Measured bytes a pixel: PNG grey or palette 11.3, 16-bit grey 12.5, RGB
# 10.2, RGBA 14.3, grey with alpha 16.3; WebP 21.5; a progressive JPEG its coefficients plus 15 %.
WORKER_DECODE_FACTOR = 3
_PNG_WORKER_BYTES = {0: 12, (0, 16): 13, 2: 11, 3: 12, 4: 17, 6: 15}
_WEBP_WORKER_BYTES = 22
# EXIF orientation -> (swap the axes, then reverse the rows, reverse the columns): the same
# result as Pillow's ImageOps.exif_transpose, expressed as numpy views.
_ORIENTATIONS = {
    2: (False, False, True),
    3: (False, True, True),
    4: (False, True, False),
    5: (True, False, False),
    6: (True, False, True),
    7: (True, True, True),
    8: (True, True, False),
}


@dataclass(frozen=True)
class ImageInfo:
    format: str  # JPEG | PNG | WEBP
    content_type: str
    width: int  # after EXIF orientation
    height: int
    scans: int = 1  # a progressive JPEG's passes over the image (its cost counts them)


@dataclass(frozen=True)
class Decoded:
    """An upright 8-bit BGR photo decoded at 1/`scale` of its size (1 for a full decode)."""

    bgr: np.ndarray
    scale: int = 1


def to_photo(xy: np.ndarray, scale: int) -> np.ndarray:
    """Coordinates in an image decoded at 1/`scale` -> the upright photo's pixels.

    A decoded pixel is the mean of a `scale` x `scale` block; its centre is the block's centre.
    """
    return np.asarray(xy, dtype=np.float64) * scale + (scale - 1) / 2


def from_photo(xy: np.ndarray, scale: int) -> np.ndarray:
    """The photo's pixel coordinates -> those of the image decoded at 1/`scale` (see to_photo)."""
    return (np.asarray(xy, dtype=np.float64) - (scale - 1) / 2) / scale


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


def validate_image(data: bytes, declared_type: str | None = None, *, settings: Settings) -> ImageInfo:
    """Check an upload completely and describe it; raise InvalidImage if unfit.

    The bytes alone decide: `declared_type` (what a client guessed from the file name) is not
    compared, so a PNG named x.jpg is accepted, and reported, as the PNG it is, whichever
    client sent it. The headers are checked first (size, scans, decode memory: see the module's
    docstring); then every byte of pixel data is decoded, so that truncated or corrupt files get a
    4xx before any job exists (see _decode_pixel_data).
    `settings` give the limits (MAX_UPLOAD_BYTES, MAX_IMAGE_PIXELS, MIN_IMAGE_SIDE).
    """
    del declared_type  # kept for the callers' signature; see above
    fmt = _accepted_format(data, settings.max_upload_bytes)
    header = _read_header(fmt, data)
    _check_dimensions(header.width, header.height, settings)
    _check_decode_work(header, settings.max_image_pixels)
    image = _open(data)
    if (image.format or "").upper() not in _PILLOW_FORMATS[fmt] or image.size != (header.width, header.height):
        raise InvalidImage("invalid_image", "The file could not be read as an image.")
    if getattr(image, "n_frames", 1) > 1 and image.format != "MPO":
        raise _animated()
    _decode_pixel_data(image)  # a JPEG's draft changes image.size: the header's stays
    width, height = header.width, header.height
    if _exif_orientation(image) in (5, 6, 7, 8):
        width, height = height, width
    return ImageInfo(format=fmt, content_type=_ACCEPTED[fmt], width=width, height=height, scans=header.scans)


@dataclass(frozen=True)
class _Header:
    """What the headers say decoding will take."""

    width: int
    height: int
    peak_bytes: int  # validation's decode at its peak
    worker_peak_bytes: int  # a worker's decode for the model at its peak
    scans: int = 1
    animated: bool = False


def _read_header(fmt: str, data: bytes) -> _Header:
    try:
        if fmt == "JPEG":
            jpeg = read_jpeg_header(data, stop_after=MAX_JPEG_SCANS)
            reduced = -(-jpeg.width // 8) * -(-jpeg.height // 8)  # the 1/8-scale grey decode
            peak = jpeg.coefficient_bytes() if jpeg.progressive else reduced
            return _Header(jpeg.width, jpeg.height, peak, peak * 115 // 100, scans=jpeg.scans)
        if fmt == "PNG":
            png = read_png_header(data)
            pixels = png.width * png.height
            kind = (png.colour_type, png.bit_depth)
            per_pixel = _PNG_PEAK_BYTES.get(kind, _PNG_PEAK_BYTES.get(png.colour_type, 4))
            worker = _PNG_WORKER_BYTES.get(kind, _PNG_WORKER_BYTES.get(png.colour_type, 17))
            return _Header(png.width, png.height, pixels * per_pixel, pixels * worker)
        webp = read_webp_header(data)
        pixels = webp.width * webp.height
        peak, worker = pixels * _WEBP_PEAK_BYTES, pixels * _WEBP_WORKER_BYTES
        return _Header(webp.width, webp.height, peak, worker, animated=webp.animated)
    except (HeaderError, IndexError, ValueError, struct.error) as exc:
        raise InvalidImage("invalid_image", "The file could not be read as an image.") from exc


def _animated() -> InvalidImage:
    return InvalidImage("animated_image", "Animated images are not accepted; send a single frame.")


def _check_decode_work(header: _Header, max_pixels: int) -> None:
    """Refuse, before anything is decoded, a scan bomb, an animation (Pillow would allocate its
    canvases on opening it) and an image whose validation would pass DECODE_BYTES_PER_PIXEL x
    `max_pixels` bytes, or a worker's decode WORKER_DECODE_FACTOR times that."""
    if header.scans > MAX_JPEG_SCANS:
        raise InvalidImage(
            "too_many_scans",
            f"The JPEG has more than {MAX_JPEG_SCANS} scans (progressive passes over the image; cameras "
            "write at most about 14). Save it again as a baseline JPEG.",
        )
    if header.animated:
        raise _animated()
    budget = max_pixels * DECODE_BYTES_PER_PIXEL
    if header.peak_bytes > budget or header.worker_peak_bytes > budget * WORKER_DECODE_FACTOR:
        over_web = header.peak_bytes > budget
        megabytes = -(-(header.peak_bytes if over_web else header.worker_peak_bytes) // 1_000_000)
        allowed = budget // 1_000_000 * (1 if over_web else WORKER_DECODE_FACTOR)
        raise InvalidImage(
            "image_too_large",
            f"The image has {header.width}x{header.height} pixels, which in this format take {megabytes} MB "
            f"to decode; at most {allowed} MB are accepted. Send it smaller, or as a baseline JPEG.",
        )


def _accepted_format(data: bytes, limit: int) -> str:
    """The upload's format by its magic bytes, once its size is known to be acceptable (`limit` bytes)."""
    if not data:
        raise InvalidImage("empty_file", "The uploaded file is empty.")
    if len(data) > limit:
        raise file_too_large(limit)
    fmt = sniff_format(data)
    if fmt is None:
        kind = _describe_unsupported(data)
        raise InvalidImage(
            "unsupported_media_type", f"Unsupported image format ({kind}); send JPEG, PNG or WebP.", status=415
        )
    return fmt


def _check_dimensions(width: int, height: int, settings: Settings) -> None:
    """Refuse too many pixels (before anything is decoded) and too small a side."""
    if width * height > settings.max_image_pixels:
        raise InvalidImage(
            "image_too_large",
            f"The image has {width}x{height} pixels; at most {settings.max_image_pixels} are accepted.",
        )
    if min(width, height) < settings.min_image_side:
        raise InvalidImage(
            "image_too_small", f"The image must be at least {settings.min_image_side} pixels on each side."
        )


def _decode_pixel_data(image: Image.Image) -> None:
    """Decode all of the pixel data, so that truncated or corrupt files fail here, not in a worker.

    A JPEG is decoded to 1/8-scale grayscale: libjpeg still Huffman-decodes every coefficient
    of every component to the end of the stream, so exactly the same files fail as with a full
    decode (tests/unit/test_images.py), without the full-size inverse DCT, upsampling, colour
    conversion and buffer (~5x less time for a 36 MP photo).
    """
    if image.format in _PILLOW_FORMATS["JPEG"]:
        width, height = image.size
        image.draft("L", (max(1, width // 8), max(1, height // 8)))
    try:
        image.load()
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidImage("invalid_image", "The image data is truncated or corrupt.") from exc


def _exif_orientation(image: Image.Image) -> int:
    try:
        orientation = int(image.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block only means "no rotation"
        return 1
    return orientation if orientation in _ORIENTATIONS else 1


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image  # convert() would copy it
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        # 16-bit grayscale: scale to 8 bits instead of clipping to white, through a 65536-entry
        # table (a float64 copy of 40 Mpx took 320 MB and 5 s).
        array = np.asarray(image)
        peak = int(array.max()) if array.size else 0
        scale = 255.0 / peak if peak > 255 else 1.0
        table = np.clip(np.arange(65536, dtype=np.float64) * scale, 0, 255).astype(np.uint8)
        image = Image.fromarray(table[array], "L")
    elif image.mode == "I":
        # 32-bit integer grayscale: the same scaling, in float32.
        array = np.asarray(image, dtype=np.float32)
        peak = float(array.max()) if array.size else 0.0
        scale = 255.0 / peak if peak > 255 else 1.0
        image = Image.fromarray(np.clip(array * scale, 0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        # Through RGBA only when the palette has transparency: RGBA takes 4 bytes a pixel more.
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA"):
        # Transparent areas become white rather than black, which suits detectors better. One
        # RGBA image, its alpha channel and the background: each copy of a 30 Mpx image is 120 MB.
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def reduction_for(long_side: int, min_long_side: int, max_scale: int = 8) -> int:
    """The coarsest JPEG scale (8, 4, 2; else 1) that keeps `min_long_side` pixels on the long side."""
    for scale in JPEG_SCALES:
        if scale <= max_scale and -(-long_side // scale) >= min_long_side:
            return scale
    return 1


def _draft(image: Image.Image, min_long_side: int, max_scale: int) -> int:
    """Ask libjpeg for a reduced decode (before anything is decoded); returns the scale it took."""
    width, height = image.size
    scale = reduction_for(max(width, height), min_long_side, max_scale) if image.format in ("JPEG", "MPO") else 1
    if scale == 1:
        return 1
    drafted = image.draft(None, (width // scale, height // scale))
    return round(width / drafted[1][2]) if drafted else 1


def _oriented(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """The EXIF orientation applied as numpy views (no copy)."""
    swap, rows, columns = _ORIENTATIONS.get(orientation, (False, False, False))
    view = pixels.transpose(1, 0, 2) if swap else pixels
    view = view[::-1] if rows else view
    return view[:, ::-1] if columns else view


def _turbo_bgr(data: bytes, image: Image.Image, scale: int) -> np.ndarray | None:
    """A YCbCr or grayscale JPEG decoded by libjpeg-turbo straight into BGR at 1/`scale`, or None
    where simplejpeg cannot (the caller then decodes with Pillow).

    The same libjpeg-turbo and the same DCT scaling as Pillow's draft, so the same pixels (tests
    compare them), without Pillow's chunked decode, its RGB copy and a BGR copy: about half the
    CPU (PERFORMANCE.md, section 11). `strict=False`: libjpeg's warnings (e.g. extraneous bytes
    before a marker) do not fail a photo that Pillow, which ignores them, validated.
    """
    if image.format not in ("JPEG", "MPO") or image.mode not in ("RGB", "L"):
        return None  # CMYK and YCCK JPEGs keep Pillow's conversion
    width, height = image.size
    wanted = (-(-height // scale), -(-width // scale))
    try:
        bgr = simplejpeg.decode_jpeg(data, colorspace="BGR", strict=False, min_height=wanted[0], min_width=wanted[1])
    except ValueError:
        return None
    return bgr if bgr.shape[:2] == wanted else None


def decode(data: bytes, min_long_side: int = 0, max_scale: int = 8) -> Decoded:
    """Decode validated bytes to an upright 8-bit BGR array, the layout InsightFace expects.

    With `min_long_side`, a JPEG is decoded at the coarsest DCT scale that keeps at least that
    many pixels on its long side (and is no coarser than `max_scale`): a detector that looks at
    640 pixels gains nothing from 7360, and pixels never decoded cost nothing. Other formats,
    and `min_long_side` 0, decode every pixel. Coordinates map back with `to_photo`.
    """
    image = _open(data)
    orientation = _exif_orientation(image)
    scale = reduction_for(max(image.size), min_long_side, max_scale) if min_long_side else 1
    if (bgr := _turbo_bgr(data, image, scale)) is not None:
        return Decoded(np.ascontiguousarray(_oriented(bgr, orientation)), scale)
    return _pillow_decode(image, orientation, min_long_side, max_scale)


def _pillow_decode(image: Image.Image, orientation: int, min_long_side: int, max_scale: int) -> Decoded:
    """PNG, WebP, CMYK JPEGs (and any JPEG simplejpeg refuses) through Pillow."""
    scale = _draft(image, min_long_side, max_scale) if min_long_side else 1
    rgb = np.asarray(_to_rgb(image))
    return Decoded(np.ascontiguousarray(_oriented(rgb, orientation)[:, :, ::-1]), scale)


def decode_bgr(data: bytes) -> np.ndarray:
    """Every pixel of the photo, upright, as 8-bit BGR (for callers that need the full size)."""
    return decode(data).bgr
