"""What an upload's headers say about the work of decoding it, read before any decoder runs.

Pillow's WebP plugin allocates two full-size canvases as soon as a file is opened, and libjpeg
decodes a progressive JPEG scan after scan over a coefficient buffer of the whole image: the size,
the layout and the number of scans must be known, and refused if too costly, before anything
allocates or decodes. This module only parses bytes (no decoder); domain.images decides.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

# Start-of-frame markers that carry the frame header (not DHT C4, JPG C8, DAC CC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PROGRESSIVE_SOF = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_SOS, _EOI = 0xDA, 0xD9
# Markers without a length: TEM and the restart markers RST0-RST7 (SOI is checked by the caller).
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
# In entropy-coded data a 0xFF is followed by 0x00 (a stuffed byte), a restart marker or a fill
# 0xFF; anything else ends the scan.
_END_OF_SCAN = re.compile(rb"\xff(?=[^\x00\xd0-\xd7\xff])")


class HeaderError(ValueError):
    """The headers cannot be read (the caller refuses the file as not an image)."""


@dataclass(frozen=True)
class JpegHeader:
    width: int
    height: int
    progressive: bool
    # Each component's sampling factors (horizontal, vertical).
    sampling: tuple[tuple[int, int], ...]
    # SOS markers counted, never more than the counting's `stop_after` plus one.
    scans: int

    def coefficient_bytes(self) -> int:
        """The bytes of libjpeg's whole-image coefficient buffer (2 bytes a DCT coefficient, every
        component at its own resolution), which a progressive decode keeps for all of its scans."""
        max_h = max(h for h, _ in self.sampling)
        max_v = max(v for _, v in self.sampling)
        blocks = 0
        for h, v in self.sampling:
            blocks_wide = -(-self.width * h // (max_h * 8))
            blocks_high = -(-self.height * v // (max_v * 8))
            blocks += blocks_wide * blocks_high
        return blocks * 64 * 2


def read_jpeg_header(data: bytes, stop_after: int) -> JpegHeader:
    """The frame header of the first image (an MPO's further images are not read) and its number
    of scans, counting stopping past `stop_after` (a scan bomb holds thousands)."""
    position, frame, scans = 2, None, 0
    while position + 4 <= len(data) and scans <= stop_after:
        if data[position] != 0xFF:
            raise HeaderError("no marker where one was expected")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker == _EOI:
            break
        if marker in _STANDALONE:
            position += 2
            continue
        (length,) = struct.unpack_from(">H", data, position + 2)
        if length < 2:
            raise HeaderError("segment length below 2")
        segment = data[position + 4 : position + 2 + length]
        position += 2 + length
        if marker in _SOF_MARKERS and frame is None:
            frame = _frame_header(marker, segment)
        elif marker == _SOS:
            scans += 1
            end = _END_OF_SCAN.search(data, position)
            position = end.start() if end else len(data)
    if frame is None:
        raise HeaderError("no frame header")
    width, height, progressive, sampling = frame
    return JpegHeader(width=width, height=height, progressive=progressive, sampling=sampling, scans=scans)


def _frame_header(marker: int, segment: bytes) -> tuple[int, int, bool, tuple[tuple[int, int], ...]]:
    if len(segment) < 6:
        raise HeaderError("short frame header")
    height, width, components = struct.unpack_from(">HHB", segment, 1)
    if len(segment) < 6 + 3 * components or components == 0:
        raise HeaderError("short frame header")
    if width == 0 or height == 0:  # a height defined later (DNL) is not something cameras write
        raise HeaderError("no width or height in the frame header")
    sampling = []
    for index in range(components):
        factors = segment[6 + 3 * index + 1]
        horizontal, vertical = factors >> 4, factors & 0x0F
        if not (1 <= horizontal <= 4 and 1 <= vertical <= 4):
            raise HeaderError("bad sampling factors")
        sampling.append((horizontal, vertical))
    return width, height, marker in _PROGRESSIVE_SOF, tuple(sampling)


@dataclass(frozen=True)
class PngHeader:
    width: int
    height: int
    bit_depth: int
    colour_type: int


def read_png_header(data: bytes) -> PngHeader:
    """IHDR, which the PNG specification puts first, right after the signature."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise HeaderError("no IHDR")
    width, height, depth, colour_type = struct.unpack_from(">IIBB", data, 16)
    if width == 0 or height == 0:
        raise HeaderError("no width or height in IHDR")
    return PngHeader(width=width, height=height, bit_depth=depth, colour_type=colour_type)


@dataclass(frozen=True)
class WebpHeader:
    width: int
    height: int
    animated: bool


def read_webp_header(data: bytes) -> WebpHeader:
    """The canvas size from the first chunk: VP8 (lossy), VP8L (lossless) or VP8X (extended)."""
    if len(data) < 30:
        raise HeaderError("short WebP header")
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise HeaderError("no VP8 start code")
        width, height = struct.unpack_from("<HH", data, 26)
        return WebpHeader(width & 0x3FFF, height & 0x3FFF, animated=False)
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            raise HeaderError("no VP8L signature")
        (bits,) = struct.unpack_from("<I", data, 21)
        return WebpHeader((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, animated=False)
    if chunk == b"VP8X":
        flags = data[20]
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return WebpHeader(width, height, animated=bool(flags & 0x02))
    raise HeaderError("unknown WebP chunk")
