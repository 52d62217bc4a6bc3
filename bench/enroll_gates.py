"""How large is the second face in an enrollment photo? Measures the ratio of the second-largest
detected face to the largest (shorter box sides) on LFW portraits, the real single-person photos
and the group photos, to choose ENROLL_MAX_SECOND_FACE_RATIO (docs/RECOGNITION.md).

    python -m bench.enroll_gates --lfw-dir ../shared/datasets/lfw-dev --faces-dir ../shared/datasets/faces
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from bench.common import RESULTS_DIR, machine_info, write_json
from config import get_settings
from domain.enrollment import face_side
from domain.images import decode_bgr
from workers.engine import get_face_engine


def second_face_ratio(path: Path) -> tuple[float, bool]:
    """(second-largest face side / largest face side, 0 with fewer than two faces; whether the
    largest face is the one nearest the photo's centre, which is LFW's labelled person)."""
    bgr = decode_bgr(path.read_bytes())
    faces = get_face_engine(get_settings()).detect(bgr)
    sides = [face_side(f.bbox) for f in faces]
    ratio = sides[1] / sides[0] if len(sides) > 1 and sides[0] > 0 else 0.0
    centre = np.array([bgr.shape[1] / 2, bgr.shape[0] / 2])

    def distance(face) -> float:
        return float(
            np.linalg.norm(np.array([(face.bbox[0] + face.bbox[2]) / 2, (face.bbox[1] + face.bbox[3]) / 2]) - centre)
        )

    largest_is_central = not faces or min(faces, key=distance) is faces[0]
    return ratio, largest_is_central


def wrong_face_by_ratio(measured: list[tuple[float, bool]], edges: tuple[float, ...]) -> list[dict]:
    """Per bucket of the ratio: photos, and how often the largest face is not the labelled one
    (what enrolling the largest face would store under the wrong person)."""
    rows = []
    for low, high in zip((0.0, *edges), (*edges, 10.0), strict=True):
        bucket = [central for ratio, central in measured if ratio > 0 and low <= ratio < high]
        rows.append(
            {
                "ratio_from": low,
                "ratio_below": high,
                "photos": len(bucket),
                "largest_is_not_the_labelled_face": sum(not c for c in bucket),
            }
        )
    return rows


def summary(ratios: list[float], cutoffs: tuple[float, ...]) -> dict:
    values = np.asarray(ratios)
    with_second = values[values > 0]
    return {
        "photos": int(values.size),
        "with_a_second_face": int(with_second.size),
        "percentiles_of_ratio_where_present": {
            f"p{q}": round(float(np.percentile(with_second, q)), 3) for q in (50, 90, 99, 99.9)
        }
        if with_second.size
        else {},
        "max": round(float(values.max()), 3) if values.size else None,
        "refused_at": {str(c): int((values >= c).sum()) for c in cutoffs},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lfw-dir", type=Path, required=True)
    parser.add_argument("--faces-dir", type=Path, required=True)
    parser.add_argument("--cutoffs", default="0.5,0.6,0.7,0.75,0.8,0.9")
    args = parser.parse_args(argv)
    cutoffs = tuple(float(c) for c in args.cutoffs.split(","))

    lfw_measured = [second_face_ratio(p) for p in sorted((args.lfw_dir / "images").glob("*/*.jpg"))]
    lfw = [ratio for ratio, _ in lfw_measured]
    kinds: dict[str, list[float]] = {"single": [], "group": []}
    with (args.faces_dir / "labels.tsv").open() as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if row["kind"] in kinds:
                kinds[row["kind"]].append(second_face_ratio(args.faces_dir / row["path"])[0])
    payload = {
        "machine": machine_info(),
        "lfw": summary(lfw, cutoffs),
        "lfw_largest_face_is_not_the_labelled_one": wrong_face_by_ratio(lfw_measured, (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)),
        "real_single": summary(kinds["single"], cutoffs),
        "real_group": summary(kinds["group"], cutoffs),
    }
    write_json(RESULTS_DIR / "enroll_gates.json", payload)
    print(payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
