"""The face engine on its own: the detector input size follows the photo's size."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from config import get_settings
from domain.images import decode_bgr
from tests import images
from workers.engine import FaceEngine


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((250, 250, 3), 320),  # LFW-sized: never below DET_SIZE_MIN
        ((400, 300, 3), 416),  # rounded up to a multiple of 32
        ((480, 640, 3), 640),
        ((3000, 2000, 3), 640),  # large photos are scaled down to DET_SIZE, as before
    ],
)
def test_detector_input_size_follows_the_photo(shape, expected):
    engine = SimpleNamespace(settings=SimpleNamespace(det_size=640, det_size_min=320))
    assert FaceEngine.detector_input_size(engine, shape) == expected


def test_det_size_min_equal_to_det_size_turns_the_adaptation_off():
    engine = SimpleNamespace(settings=SimpleNamespace(det_size=640, det_size_min=640))
    assert FaceEngine.detector_input_size(engine, (250, 250, 3)) == 640


@pytest.fixture(scope="module")
def engines():
    settings = get_settings()
    return FaceEngine(settings), FaceEngine(dataclasses.replace(settings, det_size_min=settings.det_size))


def test_a_small_photo_gets_the_same_face_at_its_own_size_as_at_640(engines):
    adaptive, fixed = engines
    bgr = decode_bgr(images.another_photo(images.tom_hanks(), scale=0.5))
    assert max(bgr.shape[:2]) < 320
    small, large = adaptive.analyze(bgr), fixed.analyze(bgr)
    assert len(small) == len(large) == 1
    assert np.allclose(small[0].bbox, large[0].bbox, atol=max(bgr.shape[:2]) * 0.05)
    assert float(small[0].embedding @ large[0].embedding) > 0.9  # the same face, aligned alike


def test_group_photo_still_finds_all_six_faces(engines):
    adaptive, _ = engines
    assert len(adaptive.analyze(decode_bgr(images.group_photo()))) == 6
