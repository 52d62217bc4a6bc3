"""Hostile images built on the fly (no real faces): scan bombs, tiny files of huge canvases, and
the largest files of each format that the decode budget lets through (docs/SECURITY.md)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from domain.image_headers import read_jpeg_header
from tests.images import encode


def noisy(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """Blocks of noise, enlarged: a JPEG of it has coefficients in every scan, a PNG stays small."""
    rng = np.random.default_rng(3)
    blocks = rng.integers(0, 255, (height // 32 + 1, width // 32 + 1, 3), dtype=np.uint8)
    return Image.fromarray(blocks).resize((width, height), Image.NEAREST).convert(mode)


def scan_bomb(progressive_jpeg: bytes, extra_scans: int) -> bytes:
    """The JPEG with its last scan repeated: libjpeg decodes every repetition over the whole image
    (it only warns that the progression is odd)."""
    last_scan = progressive_jpeg.rindex(b"\xff\xda")
    end = progressive_jpeg.rindex(b"\xff\xd9")
    return progressive_jpeg[:end] + progressive_jpeg[last_scan:end] * extra_scans + b"\xff\xd9"


def lossless_webp(width: int, height: int) -> bytes:
    return encode(Image.new("RGB", (width, height), (120, 80, 60)), "WEBP", lossless=True)


def grey_scan_bomb(scans: int) -> bytes:
    """A 6000x6000 grey progressive JPEG with `scans` scans in a few hundred kilobytes."""
    flat = encode(Image.new("L", (6000, 6000), 128), progressive=True)
    return scan_bomb(flat, scans - read_jpeg_header(flat, stop_after=10**6).scans)
