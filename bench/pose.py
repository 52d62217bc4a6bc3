"""Yaw of the LFW faces under the old and the current pose estimator, to choose ENROLL_MAX_YAW.

    python -m bench.pose [--lfw-dir DIR] [--limit N] [--out bench/results/pose.json]

Every LFW dev image goes through the worker's path: ``domain.images.decode_bgr``, then the
service engine (``workers.engine.get_face_engine``, the configured DET_SIZE / DET_SIZE_MIN /
DET_THRESH) detects, and ``FaceEngine.embed`` aligns the face nearest the image centre (the
labelled person; bench/lfw.py does the same) and measures its quality exactly as an enrollment
does (``workers.quality.measure``). Its keypoints are also read by the old estimator (kept
here as ``old_yaw``: asin of the nose offset over half the eye distance, clamped to +-1, which
reads every face turned beyond about 45 degrees as 90).

Written: percentiles of |yaw| (p50, p90, p99, p99.9, max) for both, how many photos a yaw gate
at several values refuses, how many the configured enrollment gates refuse as a whole, the
photos with the largest current |yaw|, and a synthetic check: the five points of InsightFace's
mean 3D face turned to known angles (and tilted up or down), read by both estimators.
"""

from __future__ import annotations

import argparse
import math
import pickle
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.common import RESULTS_DIR, machine_info, write_json
from config import get_settings
from domain.enrollment import check_quality
from domain.errors import FaceError
from domain.images import decode_bgr
from workers.quality import pose

PERCENTILES = (50, 90, 99, 99.9)
CANDIDATE_GATES = (45, 50, 55, 60, 65, 70, 75, 80, 85)
TOP = 20


def old_yaw(kps: np.ndarray) -> float:
    """The estimator replaced in workers/quality.py (kept for the comparison)."""
    left_eye, right_eye, nose = kps[0], kps[1], kps[2]
    dx, dy = right_eye - left_eye
    eye_distance = math.hypot(dx, dy) or 1.0
    roll = math.atan2(dy, dx)
    offset = nose - (left_eye + right_eye) / 2
    along_eyes = offset[0] * math.cos(roll) + offset[1] * math.sin(roll)
    return math.degrees(math.asin(max(-1.0, min(1.0, 2 * along_eyes / eye_distance))))


def new_yaw(kps: np.ndarray) -> float:
    return pose(kps)[0]


def distribution(values: list[float]) -> dict:
    magnitudes = np.abs(np.asarray(values, dtype=np.float64))
    stats = {f"p{p:g}": round(float(np.percentile(magnitudes, p)), 1) for p in PERCENTILES}
    stats["max"] = round(float(magnitudes.max()), 1)
    stats["refused_at"] = {str(gate): int((magnitudes > gate).sum()) for gate in CANDIDATE_GATES}
    stats["saturated_at_90"] = int((magnitudes >= 89.95).sum())
    return stats


def mean_face_points() -> np.ndarray:
    """Eye centres, nose tip and mouth corners of InsightFace's mean 3D face (x right, y down, z out)."""
    import insightface

    path = Path(insightface.__file__).parent / "data" / "objects" / "meanshape_68.pkl"
    with path.open("rb") as handle:
        shape = np.asarray(pickle.load(handle), dtype=np.float64)
    return np.stack([shape[36:42].mean(0), shape[42:48].mean(0), shape[30], shape[48], shape[54]])


def turned(points: np.ndarray, yaw: float, pitch: float = 0.0, *, seen_from_above: bool = False) -> np.ndarray:
    """Orthographic image of the points turned by `yaw` (positive: nose towards the photo's right) and
    nodded by `pitch` (the head nods, then turns; or, `seen_from_above`, the camera is raised by it)."""
    a, b = math.radians(yaw), math.radians(pitch)
    turn = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    nod = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    rotation = nod @ turn if seen_from_above else turn @ nod
    return (points @ rotation.T)[:, :2] * 100 + 200


def calibration(points: np.ndarray) -> float:
    """Half-width of the eye and mouth lines over the nose tip's depth in front of the midline
    (workers.quality.FACE_WIDTH_OVER_NOSE_DEPTH)."""
    left_eye, right_eye, nose, mouth_left, mouth_right = points
    half_width = (right_eye[0] - left_eye[0] + mouth_right[0] - mouth_left[0]) / 4
    return float(half_width / (nose[2] - (left_eye[2] + right_eye[2] + mouth_left[2] + mouth_right[2]) / 4))


def synthetic(points: np.ndarray) -> list[dict]:
    rows = []
    for pitch, above in ((0, False), (-20, False), (20, False), (-20, True), (20, True)):
        for yaw in (0, 15, 30, 45, 60, 75, 85, 90):
            kps = turned(points, yaw, pitch, seen_from_above=above)
            rows.append(
                {
                    "yaw": yaw,
                    "pitch": pitch,
                    "pitch_of": "camera" if above else "head",
                    "old": round(old_yaw(kps), 1),
                    "new": round(new_yaw(kps), 1),
                }
            )
    return rows


def measure(lfw_dir: Path, limit: int | None, log) -> dict:
    from bench.lfw import nearest_centre  # the labelled person, as in the LFW benchmark
    from workers.engine import get_face_engine

    settings = get_settings()
    gates = settings.enrollment_policy()
    engine = get_face_engine(get_settings())
    paths = sorted((lfw_dir / "images").glob("*/*.jpg"))[:limit]
    rows, undetected, not_largest = [], [], 0
    started = time.perf_counter()
    for count, path in enumerate(paths, 1):
        bgr = decode_bgr(path.read_bytes())
        faces = engine.detect(bgr)
        if not faces:
            undetected.append(path.name)
            continue
        face = nearest_centre(faces, bgr.shape)
        not_largest += face is not faces[0]
        engine.embed(bgr, [face])
        quality = dict(face.quality)
        old = old_yaw(face.kps)
        refusals = {}
        for name, yaw in (("old", old), ("new", quality["yaw"])):
            try:
                check_quality({**quality, "yaw": yaw}, gates)
                refusals[name] = None
            except FaceError as error:
                refusals[name] = error.code
        rows.append({"image": path.name, "old": old, "new": quality["yaw"], "refused": refusals})
        if count % 500 == 0:
            log(f"  {count}/{len(paths)} images, {time.perf_counter() - started:.0f}s")

    def refused(which: str) -> dict:
        codes: dict[str, int] = {}
        for row in rows:
            if code := row["refused"][which]:
                codes[code] = codes.get(code, 0) + 1
        return codes

    extreme = sorted(rows, key=lambda row: abs(row["new"]), reverse=True)[:TOP]
    return {
        "images": len(paths),
        "faces_measured": len(rows),
        "undetected": undetected,
        "centre_face_not_largest": not_largest,
        "seconds": round(time.perf_counter() - started, 1),
        "detector": {
            "det_size": settings.det_size,
            "det_size_min": settings.det_size_min,
            "det_thresh": settings.det_thresh,
        },
        "enrollment_gates": gates,
        "abs_yaw_degrees": {
            "old": distribution([r["old"] for r in rows]),
            "new": distribution([r["new"] for r in rows]),
        },
        "refused_by_the_configured_gates": {"old": refused("old"), "new": refused("new")},
        "largest_new_yaw": [{"image": r["image"], "old": round(r["old"], 1), "new": r["new"]} for r in extreme],
        "refused_with_old_yaw_by_pose": sorted(r["image"] for r in rows if r["refused"]["old"] == "extreme_pose"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pose", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw-dir", type=Path, help="folder with images/ (default: LFW_DIR)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images (sorted by path)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "pose.json")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    lfw_dir = args.lfw_dir or get_settings().lfw_dir
    if lfw_dir is None or not (lfw_dir / "images").is_dir():
        parser.error(f"no LFW images/ under {lfw_dir} (pass --lfw-dir or set LFW_DIR)")
    machine = machine_info()
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "lfw_dir": str(lfw_dir),
        "machine": machine,
        "lfw": measure(lfw_dir, args.limit, log),
        "face_width_over_nose_depth_of_the_mean_face": round(calibration(mean_face_points()), 3),
        "synthetic_mean_face": synthetic(mean_face_points()),
    }
    write_json(args.out, result)
    for name in ("old", "new"):
        stats = result["lfw"]["abs_yaw_degrees"][name]
        log(f"{name}: " + " ".join(f"{key}={value}" for key, value in stats.items() if key != "refused_at"))
        log(f"  refused at: {stats['refused_at']}")
    log(f"results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
