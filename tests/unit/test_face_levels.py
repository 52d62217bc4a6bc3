"""Pitch from the five keypoints (workers/quality.py) and `quality_for_recognition` (domain/faces.py),
whose cut-offs must be the ones bench/quality_levels.py measured."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from config import get_settings
from domain.faces import LOW_ABOVE, LOW_BELOW, face_fields, recognition_quality
from workers.quality import MOUTH_DEPTH_OVER_HEIGHT, NOSE_DEPTH_OVER_HEIGHT, pitch, pose

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "quality_levels.json"
# The ArcFace template (a frontal face's five keypoints, x right, y down) given the depths of the mean
# 3D face the estimator assumes: eyes at 0, nose and mouth corners in front of them (z towards the camera).
TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
HEIGHT = 40.7
DEPTHS = np.array(
    [0, 0, NOSE_DEPTH_OVER_HEIGHT * HEIGHT, MOUTH_DEPTH_OVER_HEIGHT * HEIGHT, MOUTH_DEPTH_OVER_HEIGHT * HEIGHT]
)
FACE_3D = np.column_stack([TEMPLATE - TEMPLATE.mean(0), DEPTHS])


def keypoints(yaw: float = 0.0, nod: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """FACE_3D nodded up by `nod` (chin raised), then turned by `yaw` and tilted by `roll`; orthographic."""
    a, b, c = (math.radians(v) for v in (yaw, nod, roll))
    turn = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    # y points down and z towards the camera: raising the chin moves the nose tip up (y decreases).
    up = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    tilt = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return (FACE_3D @ (tilt @ turn @ up).T)[:, :2] * 3 + 300


def mirrored(kps: np.ndarray) -> np.ndarray:
    return (kps * [-1, 1] + [1000, 0])[[1, 0, 2, 4, 3]]


def test_a_frontal_face_reads_level():
    assert abs(pitch(TEMPLATE)) < 1
    assert abs(pitch(keypoints())) < 1


@pytest.mark.parametrize("nod", [-30, -15, 15, 30])
@pytest.mark.parametrize(("yaw", "roll"), [(0, 0), (30, 0), (-20, 25), (60, -10)])
def test_a_nodded_face_reads_its_pitch_whatever_its_turn_and_tilt(nod, yaw, roll):
    assert pitch(keypoints(yaw, nod, roll)) == pytest.approx(nod, abs=1)


def test_raising_the_chin_is_positive_and_a_mirror_keeps_the_pitch_and_flips_the_yaw():
    up, down = keypoints(nod=20), keypoints(nod=-20)
    assert pitch(up) > 15 and pitch(down) < -15
    turned = keypoints(yaw=35, nod=15, roll=10)
    assert pitch(mirrored(turned)) == pytest.approx(pitch(turned))
    assert pose(mirrored(turned))[0] == pytest.approx(-pose(turned)[0])


GOOD = {
    "face_size": 110.0,
    "det_score": 0.85,
    "sharpness": 200.0,
    "brightness": 130.0,
    "yaw": 5.0,
    "pitch": 3.0,
    "roll": 1.0,
}


@pytest.mark.parametrize(
    ("change", "level"),
    [
        ({}, "high"),
        ({"det_score": 0.55}, "medium"),  # fails the enrollment gate, in no low range
        ({"face_size": 30.0}, "medium"),
        ({"yaw": 80.0}, "medium"),
        ({"face_size": 18.0}, "low"),
        ({"sharpness": 9.0}, "low"),
        ({"brightness": 235.0}, "low"),
    ],
)
def test_quality_for_recognition(change, level):
    assert recognition_quality({**GOOD, **change}, get_settings().enrollment_policy()) == level


def test_the_low_ranges_are_the_measured_ones():
    measured = json.loads(RESULTS.read_text())["low_cutoffs"]
    bench_below = {m: c for m, c in measured.items() if c is not None and m != "overexposure"}
    assert pytest.approx(bench_below) == LOW_BELOW
    assert pytest.approx({"brightness": measured["overexposure"]}) == LOW_ABOVE


def test_face_fields_name_the_keypoints_and_add_landmarks_only_when_there_are_some():
    class Face:
        bbox = [10.0, 20.0, 120.0, 150.0]
        det_score = 0.8
        kps = TEMPLATE
        quality = GOOD
        landmarks = None

    fields = face_fields(Face(), get_settings().enrollment_policy())
    assert list(fields["keypoints"]) == ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]
    assert fields["keypoints"]["nose"] == [56.0, 71.7]
    assert fields["pose"] == {"yaw": 5.0, "pitch": 3.0, "roll": 1.0}
    assert "landmarks_106" not in fields
    Face.landmarks = np.zeros((106, 2))
    assert len(face_fields(Face(), get_settings().enrollment_policy())["landmarks_106"]) == 106
