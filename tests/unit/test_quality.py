"""The pose estimate from the five keypoints (workers/quality.py), and the enrollment gate on a real
three-quarter portrait."""

from __future__ import annotations

import math

import numpy as np
import pytest

from config import get_settings
from workers.quality import pose

# The standard ArcFace 112x112 landmark template: a frontal face (eyes, nose tip, mouth corners).
FRONTAL = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]])
# A face of our own in millimetres (x right, y down, z towards the camera), not the mean face the
# estimator was calibrated on: pupils 63 mm apart, the nose tip 28 mm in front of them, mouth
# corners 50 mm apart and 7 mm in front of the pupils.
FACE_3D = np.array([[-31.5, -30, 0], [31.5, -30, 0], [0, 5, 28], [-25, 35, 7], [25, 35, 7]], dtype=np.float64)


def keypoints(yaw: float, pitch: float = 0.0, roll: float = 0.0, *, seen_from_above: bool = False) -> np.ndarray:
    """FACE_3D turned by `yaw` (positive: nose towards the right of the photo) and nodded by `pitch`
    (or the camera raised by it), tilted by `roll` in the photo; orthographic, at 4 px per mm."""
    a, b, c = (math.radians(v) for v in (yaw, pitch, roll))
    turn = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    nod = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    tilt = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    rotation = tilt @ (nod @ turn if seen_from_above else turn @ nod)
    return (FACE_3D @ rotation.T)[:, :2] * 4 + 300


def mirrored(kps: np.ndarray) -> np.ndarray:
    """The keypoints of the horizontally flipped photo (the detector lists the left-most eye first)."""
    flipped = kps * [-1, 1] + [1000, 0]
    return flipped[[1, 0, 2, 4, 3]]


def test_a_frontal_face_reads_zero():
    yaw, roll = pose(FRONTAL)
    assert abs(yaw) < 2 and abs(roll) < 1
    assert abs(pose(keypoints(0))[0]) < 1


@pytest.mark.parametrize("yaw", [15, 30, 45, 60, 75])
@pytest.mark.parametrize(
    ("pitch", "roll", "seen_from_above"), [(0, 0, False), (15, 0, False), (-15, 20, False), (15, 0, True)]
)
def test_turned_faces_read_their_angle_without_saturating(yaw, pitch, roll, seen_from_above):
    measured, _ = pose(keypoints(yaw, pitch, roll, seen_from_above=seen_from_above))
    assert measured == pytest.approx(yaw, abs=7)  # the old asin estimate read 90 from about 45 on


def test_a_profile_reads_about_ninety():
    assert pose(keypoints(90))[0] > 85
    assert pose(keypoints(90, 15, seen_from_above=True))[0] > 85
    assert pose(keypoints(-90))[0] < -85


def test_the_sign_follows_the_side_the_face_turns_to():
    right, _ = pose(keypoints(40))
    left, _ = pose(keypoints(-40))
    assert right > 30 and left < -30
    yaw, roll = pose(keypoints(40, roll=10))
    mirror_yaw, mirror_roll = pose(mirrored(keypoints(40, roll=10)))
    assert mirror_yaw == pytest.approx(-yaw) and mirror_roll == pytest.approx(-roll)
    assert roll > 0


def test_roll_alone_does_not_read_as_yaw():
    yaw, roll = pose(keypoints(0, roll=30))
    assert abs(yaw) < 1 and roll == pytest.approx(30, abs=0.5)  # clockwise in the photo is positive


@pytest.mark.dataset
def test_a_three_quarter_lfw_portrait_passes_the_enrollment_gates():
    """Bill_Frist_0002.jpg: turned about 45 degrees; the old estimate read -90, `extreme_pose`."""
    from domain.enrollment import check_quality
    from domain.images import decode_bgr
    from workers.engine import get_face_engine

    settings = get_settings()
    if settings.lfw_dir is None:
        pytest.skip("LFW_DIR is not set: the LFW dev images (../shared/datasets/lfw-dev) are not available")
    path = settings.lfw_dir / "images" / "Bill_Frist" / "Bill_Frist_0002.jpg"
    if not path.exists():
        pytest.skip(f"{path} does not exist (LFW_DIR={settings.lfw_dir})")
    faces = get_face_engine(get_settings()).analyze(decode_bgr(path.read_bytes()))
    assert faces
    quality = faces[0].quality  # the largest face, the one an enrollment stores
    assert 30 < -quality["yaw"] < 60, quality  # a three-quarter view, turned to the photo's left
    check_quality(quality, {**settings.enrollment_policy(), "max_yaw": 65.0})  # the old, stricter default
