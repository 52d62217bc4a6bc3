"""Test photos: the ones shipped inside the insightface package (so tests run anywhere),
transformations that stand in for "another photo of the same person", and synthetic images."""

from __future__ import annotations

import io
import os
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps


def insightface_images_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("insightface")
    return Path(spec.origin).parent / "data" / "images"


@cache
def read(name: str) -> bytes:
    return (insightface_images_dir() / name).read_bytes()


def group_photo() -> bytes:
    """t1.jpg: six people side by side."""
    return read("t1.jpg")


def tom_hanks() -> bytes:
    """A 112x112 aligned face crop."""
    return read("Tom_Hanks_54745.png")


def encode(image: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def distinct_copy(data: bytes, tag: str) -> bytes:
    """The same picture as a different file (a JPEG comment carries `tag`): the service refuses
    one photo for two persons of a gallery, and tests that enroll many persons need many photos."""
    return encode(Image.open(io.BytesIO(data)).convert("RGB"), quality=90, comment=tag.encode())


def as_jpeg(data: bytes) -> bytes:
    return encode(Image.open(io.BytesIO(data)).convert("RGB"), quality=95)


def another_photo(data: bytes, scale: float = 1.0) -> bytes:
    """A mirrored, darker, re-encoded copy: the stand-in for a second photo of the same person."""
    image = ImageOps.mirror(Image.open(io.BytesIO(data)).convert("RGB"))
    image = ImageEnhance.Brightness(image).enhance(0.8)
    image = ImageEnhance.Contrast(image).enhance(1.15)
    if scale != 1.0:
        image = image.resize((int(image.width * scale), int(image.height * scale)), Image.BICUBIC)
    return encode(image, quality=85)


def tilted_photo(data: bytes, degrees: float = 8.0) -> bytes:
    """Twice the size and turned a little in the picture: another stand-in for a second photo, far
    enough from another_photo's copies (similarity 0.93-0.96) not to count as the same face again
    (ENROLL_SAME_FACE_SIMILARITY), which two another_photo copies at different scales do (0.99)."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image = image.resize((image.width * 2, image.height * 2), Image.BICUBIC)
    return encode(image.rotate(degrees, resample=Image.BICUBIC, expand=True, fillcolor=(128, 128, 128)), quality=85)


def crop(data: bytes, box: tuple[int, int, int, int]) -> bytes:
    return encode(Image.open(io.BytesIO(data)).convert("RGB").crop(box), quality=95)


# In t1.jpg (1280x886) the second face from the left sits around x 270-372, y 145-270.
ONE_FACE_OF_GROUP = (200, 60, 450, 360)


def no_face_photo(size: tuple[int, int] = (320, 240)) -> bytes:
    """A smooth gradient with mild noise: a valid photo with nobody in it."""
    width, height = size
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    rng = np.random.default_rng(7)
    pixels = (0.6 * x + 0.4 * y + rng.normal(0, 6, (height, width, 3))).clip(0, 255).astype(np.uint8)
    return encode(Image.fromarray(pixels), quality=90)


def dataset_dir(variable: str = "FACES_DATASET_DIR") -> Path:
    """The shared dataset folder named by `variable`, or skip the test with the reason."""
    value = os.environ.get(variable)
    if not value:
        pytest.skip(f"{variable} is not set: the real-photo datasets (../shared/datasets) are not available")
    path = Path(value)
    if not path.is_dir():
        pytest.skip(f"{variable}={value} does not exist")
    return path
