"""Face quality measures: size, sharpness and pose, computed from the detection and the aligned crop."""

from __future__ import annotations

import math

import cv2
import numpy as np

# The inner part of the 112x112 aligned crop (eyes, nose, mouth): its edges may hold the
# black fill of a face near the photo's border, whose hard edges would read as "sharp".
INNER = slice(20, 92)


def sharpness(aligned_crop: np.ndarray) -> float:
    """Variance of the Laplacian over the inner aligned face: low means blurred."""
    gray = cv2.cvtColor(aligned_crop[INNER, INNER], cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


# Half the width of the eye and mouth lines over how far the nose tip stands in front of the face's
# midline (halfway between them), in InsightFace's mean 3D face (insightface/data/objects/
# meanshape_68.pkl; eye centres: the mean of each eye's six points; 30: the nose tip; 48 and 54:
# the mouth corners): (0.266 + 0.210) / 2 / (0.599 - (0.315 + 0.378) / 2). bench/pose.py checks it.
FACE_WIDTH_OVER_NOSE_DEPTH = 0.94


def pose(kps: np.ndarray) -> tuple[float, float]:
    """Approximate (yaw, roll) in degrees from the five keypoints (eyes, nose, mouth corners).

    The face's midline runs from the middle of the eyes to the middle of the mouth; roll is its
    tilt from vertical (positive: clockwise in the photo). Turning the head by `yaw` moves the
    nose tip, which stands in front of that line, sideways by depth x sin(yaw), while the eye and
    mouth lines shrink to width x cos(yaw); so the nose's distance from the midline over their
    half-widths is tan(yaw) / FACE_WIDTH_OVER_NOSE_DEPTH, and atan2 maps it back: 0 frontal,
    45 a three-quarter view, 90 a profile, without saturating in between. The midline keeps its
    length and direction when the head turns, where the eye line shrinks (its direction is noise
    near a profile) and tilts when a turned head is also seen from above or below.
    Positive yaw: the nose is towards the second eye (the right one in the photo).
    """
    left_eye, right_eye, nose, mouth_left, mouth_right = (np.asarray(p, dtype=np.float64) for p in kps[:5])
    eyes, mouth = (left_eye + right_eye) / 2, (mouth_left + mouth_right) / 2
    down_x, down_y = mouth - eyes
    roll = math.atan2(-down_x, down_y)
    across = np.array([math.cos(roll), math.sin(roll)])  # perpendicular to the midline
    offset = float((nose - eyes) @ across)
    half_width = float((right_eye - left_eye) @ across + (mouth_right - mouth_left) @ across) / 4
    yaw = math.atan2(FACE_WIDTH_OVER_NOSE_DEPTH * offset, max(half_width, 0.0))
    return math.degrees(yaw), math.degrees(roll)


def measure(bbox: list[float], det_score: float, kps: np.ndarray, aligned_crop: np.ndarray) -> dict[str, float]:
    x1, y1, x2, y2 = bbox
    yaw, roll = pose(kps)
    return {
        "face_size": round(min(x2 - x1, y2 - y1), 1),
        "det_score": round(float(det_score), 4),
        "sharpness": round(sharpness(aligned_crop), 1),
        "yaw": round(yaw, 1),
        "roll": round(roll, 1),
    }
