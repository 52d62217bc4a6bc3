"""A detected face as the API describes it (detection and recognition results alike): its box,
keypoints, head pose, quality measures and `quality_for_recognition`.

No model here: the faces arrive detected and measured by a worker's engine.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from domain.enrollment import check_quality
from domain.errors import FaceError

KEYPOINT_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

# The ranges where at least 10 % of genuine LFW matches fell under MATCH_THRESHOLD, with the probes
# shrunk, blurred, darkened and overexposed (bench/quality_levels.py; its `low_cutoffs` in
# bench/results/quality_levels.json, where "overexposure" is the brightness from above;
# docs/RECOGNITION.md). The detector's confidence, the darkness and the pose reached that rate in no
# range of enough faces, so they have no cut-off of their own.
LOW_BELOW = {"face_size": 20.0, "sharpness": 15.0}
LOW_ABOVE = {"brightness": 210.0}


class MeasuredFace(Protocol):
    bbox: list[float]
    det_score: float
    kps: np.ndarray
    quality: dict[str, float]


def _points(points: np.ndarray) -> list[list[float]]:
    return [[round(float(x), 1), round(float(y), 1)] for x, y in np.asarray(points)[:, :2]]


def _passes_gates(quality: dict[str, float], gates: dict[str, float]) -> bool:
    try:
        check_quality(quality, gates)
    except FaceError:
        return False
    return True


def is_low(quality: dict[str, float]) -> bool:
    below = any(quality[measure] < cutoff for measure, cutoff in LOW_BELOW.items())
    return below or any(quality[measure] >= cutoff for measure, cutoff in LOW_ABOVE.items())


def recognition_quality(quality: dict[str, float], gates: dict[str, float]) -> str:
    """`low`: a measure in a range where genuine matches were missed most often (LOW_BELOW,
    LOW_ABOVE); `high`: passes the enrollment quality gates (`gates`: Settings.enrollment_policy);
    `medium`: the rest."""
    if is_low(quality):
        return "low"
    return "high" if _passes_gates(quality, gates) else "medium"


def face_fields(face: MeasuredFace, gates: dict[str, float]) -> dict[str, Any]:
    """What every face of a detection or recognition result says about itself."""
    quality = face.quality
    fields: dict[str, Any] = {
        "bbox": [round(float(v), 1) for v in face.bbox],
        "det_score": round(float(face.det_score), 4),
        "keypoints": dict(zip(KEYPOINT_NAMES, _points(face.kps), strict=True)),
        "pose": {"yaw": quality["yaw"], "pitch": quality["pitch"], "roll": quality["roll"]},
        "quality": quality,
        "quality_for_recognition": recognition_quality(quality, gates),
    }
    landmarks = getattr(face, "landmarks", None)
    if landmarks is not None:
        fields["landmarks_106"] = _points(landmarks)
    return fields


def detection_result(faces: list[MeasuredFace], gates: dict[str, float], model: str) -> dict[str, Any]:
    """A detection job's result: every face found, largest first (none is not an error)."""
    return {"faces": [face_fields(face, gates) for face in faces], "faces_detected": len(faces), "detector": model}
