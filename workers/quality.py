"""Face quality measures: size, sharpness, brightness and pose, computed from the detection and the aligned crop."""

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


# Where the nose tip sits between the eyes and the mouth of a frontal face, as a share of the
# eyes-to-mouth height: the ArcFace 112x112 template (insightface.utils.face_align.arcface_dst), the
# mean of the five keypoints that the detector was trained to place, (71.74 - 51.60) / (92.28 - 51.60).
NOSE_HEIGHT_FRONTAL = 0.495
# How far the nose tip and the mouth corners stand in front of the eyes, over the eyes-to-mouth
# height, in InsightFace's mean 3D face (meanshape_68.pkl, the points of FACE_WIDTH_OVER_NOSE_DEPTH):
# (0.599 - 0.315) / 0.555 and (0.378 - 0.315) / 0.555. bench/quality_levels.py checks them.
NOSE_DEPTH_OVER_HEIGHT = 0.511
MOUTH_DEPTH_OVER_HEIGHT = 0.113


def pitch(kps: np.ndarray) -> float:
    """Approximate pitch in degrees from the five keypoints: positive when the face is turned up
    (chin raised), negative when it looks down.

    The same geometry as `pose`'s yaw, about the other axis. Nodding by `pitch` moves the nose tip,
    which stands NOSE_DEPTH in front of the eyes, up or down the face by depth x sin(pitch), while
    the eyes-to-mouth height shrinks to height x cos(pitch) (less the mouth's own depth x
    sin(pitch)). So the nose's share r of the projected eyes-to-mouth height gives
    tan(pitch) = (NOSE_HEIGHT - r) / (NOSE_DEPTH - r x MOUTH_DEPTH). Heights are read across the
    eye and mouth lines, which stay level on the face when it turns or tilts (the midline does
    not: a turned face's mouth, in front of its eyes, slants it). An estimate from five points on
    a mean face: faces differ in where the nose sits, by several degrees.
    """
    left_eye, right_eye, nose, mouth_left, mouth_right = (np.asarray(p, dtype=np.float64) for p in kps[:5])
    across = _unit(right_eye - left_eye) + _unit(mouth_right - mouth_left)
    if not np.any(across):
        return 0.0
    down = np.array([-across[1], across[0]]) / np.linalg.norm(across)
    eyes, mouth = (left_eye + right_eye) / 2, (mouth_left + mouth_right) / 2
    height = float((mouth - eyes) @ down)
    if height <= 1e-6:
        return 0.0
    share = float((nose - eyes) @ down) / height
    return math.degrees(
        math.atan2(NOSE_HEIGHT_FRONTAL - share, NOSE_DEPTH_OVER_HEIGHT - share * MOUTH_DEPTH_OVER_HEIGHT)
    )


def _unit(vector: np.ndarray) -> np.ndarray:
    length = float(np.hypot(*vector))
    return vector / length if length > 1e-9 else np.zeros(2)


def brightness(aligned_crop: np.ndarray) -> float:
    """Mean grey level (0-255) over the inner aligned face: low is underexposed, high overexposed."""
    gray = cv2.cvtColor(aligned_crop[INNER, INNER], cv2.COLOR_BGR2GRAY)
    return float(gray.mean())


def measure(bbox: list[float], det_score: float, kps: np.ndarray, aligned_crop: np.ndarray) -> dict[str, float]:
    x1, y1, x2, y2 = bbox
    yaw, roll = pose(kps)
    return {
        "face_size": round(min(x2 - x1, y2 - y1), 1),
        "det_score": round(float(det_score), 4),
        "sharpness": round(sharpness(aligned_crop), 1),
        "brightness": round(brightness(aligned_crop), 1),
        "yaw": round(yaw, 1),
        "pitch": round(pitch(kps), 1),
        "roll": round(roll, 1),
    }
