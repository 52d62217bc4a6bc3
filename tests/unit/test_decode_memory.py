"""Decode budgets, format by format: the largest file each format may be peaks, in a child process
of its own, within DECODE_BYTES_PER_PIXEL x MAX_IMAGE_PIXELS (120 MB) while the web validates it,
and within WORKER_DECODE_FACTOR times that while a worker decodes it for the model; hostile files
(a lossless WebP of 16383x2441 in 1.6 kB, a progressive JPEG of thousands of scans) are refused
from their headers, before anything is decoded (docs/SECURITY.md, "Decode budgets")."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from config import get_settings
from domain import budget
from domain.errors import InvalidImage
from domain.image_headers import read_jpeg_header, read_webp_header
from domain.images import DECODE_BYTES_PER_PIXEL, MAX_JPEG_SCANS, WORKER_DECODE_FACTOR, validate_image
from tests.hostile_images import grey_scan_bomb, lossless_webp, noisy
from tests.images import encode

ROOT = Path(__file__).resolve().parents[2]
BUDGET = get_settings().max_image_pixels * DECODE_BYTES_PER_PIXEL
# ru_maxrss also sees what Python allocates around the decode (its result, the frame objects).
ALLOWANCE = 1.08

# The child reads the file, validates it, then decodes it as a worker does, and reports how much
# its peak grew in each. The peak is the kernel's VmHWM: getrusage's ru_maxrss survives exec, so a
# child would start with the peak of the test process that spawned it.
_MEASURE = """
import json, re, sys
from config import get_settings
from domain.errors import InvalidImage
from domain.images import decode, validate_image

def peak():
    status = open("/proc/self/status").read()
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) * 1024

data = open(sys.argv[1], "rb").read()
settings = get_settings()
before = peak()
worker = 0
try:
    validate_image(data, settings=settings)
    outcome = "accepted"
except InvalidImage as error:
    outcome = error.code
validation = peak() - before
if outcome == "accepted":
    decode(data, min_long_side=1280)  # a worker's decode, with the detector's 640 x 2
    worker = peak() - before
print(json.dumps({"outcome": outcome, "grown_bytes": validation, "worker_grown_bytes": worker}))
"""


def peaks(data: bytes, tmp_path: Path) -> dict:
    """How validating `data`, then decoding it as a worker does, grew a fresh process's peak."""
    path = tmp_path / "upload"
    path.write_bytes(data)
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def peak_of_validation(data: bytes, tmp_path: Path) -> tuple[str, int]:
    """(outcome, bytes the peak resident memory grew by) of validating `data` in a fresh process."""
    measured = peaks(data, tmp_path)
    return measured["outcome"], measured["grown_bytes"]


# The largest (or costliest) file of each kind that the budget lets through.
LARGEST_ACCEPTED = {
    "baseline_jpeg_40mp": lambda: encode(noisy(8000, 5000), quality=90),
    "progressive_jpeg_420_40mp": lambda: encode(noisy(6320, 6320), quality=90, progressive=True),
    "progressive_jpeg_444_20mp": lambda: encode(noisy(4464, 4464), quality=90, progressive=True, subsampling=0),
    "progressive_grey_jpeg_40mp": lambda: encode(noisy(8000, 5000, "L"), quality=90, progressive=True),
    "png_rgb_30mp": lambda: encode(noisy(6000, 5000), "PNG"),
    "png_rgba_24mp": lambda: encode(noisy(5600, 4280, "RGBA"), "PNG"),
    "png_grey_alpha_21mp": lambda: encode(noisy(5000, 4230, "LA"), "PNG"),
    "png_grey16_27mp": lambda: encode(Image.new("I;16", (6000, 4600), 300), "PNG"),
    "png_grey_30mp": lambda: encode(noisy(6000, 5000, "L"), "PNG"),
    "png_palette_30mp": lambda: encode(Image.new("P", (6000, 5000), 7), "PNG"),
    "webp_lossy_7mp": lambda: encode(noisy(3000, 2500), "WEBP", quality=80),
    "webp_lossless_7mp": lambda: lossless_webp(3000, 2500),
}
WORKER_BUDGET = BUDGET * WORKER_DECODE_FACTOR


@pytest.mark.parametrize("kind", sorted(LARGEST_ACCEPTED))
def test_every_format_decodes_within_the_budgets(kind, tmp_path):
    measured = peaks(LARGEST_ACCEPTED[kind](), tmp_path)
    assert measured["outcome"] == "accepted"
    validation, worker = measured["grown_bytes"], measured["worker_grown_bytes"]
    print(f"{kind}: validation {validation / 1e6:.0f} MB, worker {worker / 1e6:.0f} MB")  # docs/SECURITY.md
    assert validation <= BUDGET * ALLOWANCE, f"{kind}: validation's peak grew by {validation / 1e6:.0f} MB"
    assert worker <= WORKER_BUDGET * ALLOWANCE, f"{kind}: the worker's peak grew by {worker / 1e6:.0f} MB"


def test_a_palette_png_of_40_megapixels_is_refused_for_what_a_worker_makes_of_it(tmp_path):
    """One byte a pixel in the upload, 12 once converted for the model: 480 MB in a worker."""
    outcome, _ = peak_of_validation(encode(Image.new("P", (8000, 5000), 7), "PNG"), tmp_path)
    assert outcome == "image_too_large"


def test_a_tiny_lossless_webp_of_40_megapixels_is_refused_before_decoding(tmp_path):
    """16383x2441 in 1,586 bytes grew the web process by 590 MB: Pillow's WebP decoder holds
    about 16 bytes a pixel."""
    hostile = lossless_webp(16383, 2441)
    assert len(hostile) < 2000
    outcome, grown = peak_of_validation(hostile, tmp_path)
    assert outcome == "image_too_large"
    assert grown < 20_000_000


def test_a_40_megapixel_rgb_png_is_refused_for_its_decoded_size(tmp_path):
    """Pillow holds an RGB pixel in 4 bytes: 160 MB for 40 Mpx."""
    outcome, grown = peak_of_validation(encode(Image.new("RGB", (8000, 5000), "grey"), "PNG"), tmp_path)
    assert outcome == "image_too_large"
    assert grown < 20_000_000


def test_a_progressive_444_jpeg_of_40_megapixels_is_refused_for_its_coefficients():
    data = encode(noisy(6320, 6320), quality=90, progressive=True, subsampling=0)
    with pytest.raises(InvalidImage) as error:
        validate_image(data, settings=get_settings().model_copy(update={"max_upload_bytes": 50_000_000}))
    assert error.value.code == "image_too_large"
    assert "baseline JPEG" in error.value.message


def test_a_scan_bomb_is_refused_before_any_decoding():
    """2,500 scans: 10 s of web CPU before its scans were counted."""
    bomb = grey_scan_bomb(2500)
    assert len(bomb) < 1_000_000
    started = time.process_time()
    with pytest.raises(InvalidImage) as error:
        validate_image(bomb, settings=get_settings())
    assert error.value.code == "too_many_scans"
    assert time.process_time() - started < 0.5


def test_the_scan_limit_is_far_above_what_cameras_write():
    """Real photos measured (docs/SECURITY.md): at most 14 scans."""
    assert read_jpeg_header(encode(noisy(640, 480), progressive=True), stop_after=100).scans == 10
    assert read_jpeg_header(encode(noisy(640, 480, "L"), progressive=True), stop_after=100).scans == 6
    assert MAX_JPEG_SCANS >= 2 * 14


def test_a_jpeg_at_the_scan_limit_validates_in_bounded_time():
    """The worst a JPEG may be: the most coefficients the budget allows, every scan allowed."""
    bomb = grey_scan_bomb(MAX_JPEG_SCANS)
    started = time.process_time()
    info = validate_image(bomb, settings=get_settings())
    assert info.scans == MAX_JPEG_SCANS
    assert time.process_time() - started < 3


def test_the_cost_counts_a_progressive_jpegs_scans():
    """A photo costs its pixels times its passes over them (domain.budget.image_cost)."""
    settings = get_settings()
    baseline = validate_image(encode(noisy(4000, 3000), quality=90), settings=settings)
    progressive = validate_image(encode(noisy(4000, 3000), quality=90, progressive=True), settings=settings)
    bomb = validate_image(grey_scan_bomb(MAX_JPEG_SCANS), settings=settings)
    assert budget.image_cost(baseline) == 2
    assert budget.image_cost(progressive) == 4  # 10 scans: twice the work
    assert budget.image_cost(bomb) == 26  # 36 Mpx, 32 scans: 4.2 passes


@pytest.mark.parametrize("size", [(1, 1), (300, 200), (16383, 2441)])
def test_lossless_webp_headers_give_the_canvas_size(size):
    header = read_webp_header(lossless_webp(*size))
    assert (header.width, header.height) == size


def test_lossy_and_extended_webp_headers():
    lossy = encode(Image.new("RGB", (300, 200), "grey"), "WEBP", quality=80)
    assert (read_webp_header(lossy).width, read_webp_header(lossy).height) == (300, 200)
    extended = read_webp_header(encode(Image.new("RGBA", (300, 200), (1, 2, 3, 4)), "WEBP", quality=80))
    assert (extended.width, extended.height, extended.animated) == (300, 200, False)
