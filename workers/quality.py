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


def pose(kps: np.ndarray) -> tuple[float, float]:
    """Approximate (yaw, roll) in degrees from the five keypoints.

    Roll is the tilt of the eye line. Yaw comes from how far the nose sits from the middle
    of the eyes, relative to the eye distance (about half of it in a full profile).
    """
    left_eye, right_eye, nose = kps[0], kps[1], kps[2]
    dx, dy = right_eye - left_eye
    eye_distance = math.hypot(dx, dy) or 1.0
    roll = math.atan2(dy, dx)
    offset = nose - (left_eye + right_eye) / 2
    along_eyes = offset[0] * math.cos(roll) + offset[1] * math.sin(roll)
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, 2 * along_eyes / eye_distance))))
    return yaw, math.degrees(roll)


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
