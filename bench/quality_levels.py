"""Which measured faces miss their genuine matches: the data behind `quality_for_recognition`.

    nice -n 10 python -m bench.quality_levels [--lfw-dir DIR] [--pairs 200] [--out bench/results/quality_levels.json]
    python -m bench.quality_levels --from-rows bench/results/quality_levels.csv   # the analysis again, no model

For each genuine LFW pair (a balanced slice of every fold of pairs.txt), the first photo is the
enrolled reference, embedded as it is, and the second is the probe, embedded as it is and degraded
the ways real photos are: shrunk (a face far from the camera), blurred (focus, motion), darkened
and overexposed. Each probe face is measured exactly as the service measures it
(`FaceEngine.embed` -> `workers.quality.measure`) and compared with its reference: a genuine match
missed is a similarity under MATCH_THRESHOLD (the 1:1 threshold; a recognition's open-set
threshold is at least that).

Written: the miss rate (FNMR) per degradation, per bin of every measure, the cut-offs below (or
above) which at least LOW_FNMR of genuine matches were missed (`low_cutoffs`: the constants of
domain/faces.py), and the miss rate of each level those constants give. Faces the detector did
not find count as missed in the per-degradation rates and are listed apart: they have no measures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from bench.common import RESULTS_DIR, machine_info, write_csv, write_json
from config import get_settings
from domain.images import decode_bgr

# A measure's range is "low" where at least this share of genuine matches fell under the threshold
# (about ten times the miss rate of LFW's own photos), judged on bins of at least MIN_FACES faces.
LOW_FNMR = 0.10
MIN_FACES = 25

DEGRADATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "original": lambda bgr: bgr,
    "shrunk_0.5": lambda bgr: _shrink(bgr, 0.5),
    "shrunk_0.35": lambda bgr: _shrink(bgr, 0.35),
    "shrunk_0.25": lambda bgr: _shrink(bgr, 0.25),
    "shrunk_0.18": lambda bgr: _shrink(bgr, 0.18),
    "blur_2": lambda bgr: cv2.GaussianBlur(bgr, (0, 0), 2.0),
    "blur_4": lambda bgr: cv2.GaussianBlur(bgr, (0, 0), 4.0),
    "blur_6": lambda bgr: cv2.GaussianBlur(bgr, (0, 0), 6.0),
    "dark_0.25": lambda bgr: cv2.convertScaleAbs(bgr, alpha=0.25),
    "dark_0.1": lambda bgr: cv2.convertScaleAbs(bgr, alpha=0.1),
    "overexposed_2.5": lambda bgr: cv2.convertScaleAbs(bgr, alpha=2.5),
    "overexposed_4": lambda bgr: cv2.convertScaleAbs(bgr, alpha=4.0),
}

# measure -> (direction, bin edges, the probes it is judged on): "min" measures are worse when small,
# "max" when large (by magnitude). Each is judged on the photos as they are and the degradations
# that move it, so that a blurred full-size face does not count against large faces. The detector's
# confidence drops with every degradation, so across them it only repeats the others (a third of
# LFW's own photos score under 0.75 and miss no more often than the rest): it is judged, with the
# pose, on the photos as they are.
BINS: dict[str, tuple[str, tuple[float, ...], tuple[str, ...]]] = {
    "face_size": ("min", (0, 15, 18, 20, 22, 25, 30, 40, 60, 1e9), ("original", "shrunk")),
    "sharpness": ("min", (0, 4, 6, 8, 10, 12, 15, 20, 25, 35, 50, 100, 1e9), ("original", "blur")),
    "det_score": ("min", (0, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 1.01), ("original",)),
    "brightness": ("min", (0, 10, 15, 20, 30, 40, 60, 80, 1e9), ("original", "dark")),
    "overexposure": ("max", (0, 180, 200, 210, 220, 230, 240, 256), ("original", "overexposed")),
    "yaw": ("max", (0, 15, 30, 45, 60, 90.1), ("original",)),
    "pitch": ("max", (0, 10, 20, 30, 90.1), ("original",)),
}


def _shrink(bgr: np.ndarray, factor: float) -> np.ndarray:
    height, width = bgr.shape[:2]
    return cv2.resize(
        bgr, (max(1, round(width * factor)), max(1, round(height * factor))), interpolation=cv2.INTER_AREA
    )


def _value(quality: dict[str, float], measure: str) -> float:
    if measure == "overexposure":
        return quality["brightness"]
    return abs(quality[measure]) if measure in ("yaw", "pitch") else quality[measure]


def embed_probes(lfw_dir: Path, pairs: int, log) -> tuple[list[dict], dict[str, int], float]:
    from bench.lfw import nearest_centre, read_pairs  # the labelled person, as in the LFW benchmark
    from workers.engine import get_face_engine

    engine = get_face_engine(get_settings())
    genuine = [p for p in read_pairs(lfw_dir / "pairs.txt", 2 * pairs)[0] if p.same]
    rows, undetected = [], dict.fromkeys(DEGRADATIONS, 0)
    started = time.perf_counter()

    def largest_central(bgr: np.ndarray):
        faces = engine.detect(bgr)
        if not faces:
            return None
        face = nearest_centre(faces, bgr.shape)
        engine.embed(bgr, [face])
        return face

    for count, pair in enumerate(genuine, 1):
        reference = largest_central(decode_bgr((lfw_dir / "images" / pair.a).read_bytes()))
        if reference is None:
            continue
        probe_photo = decode_bgr((lfw_dir / "images" / pair.b).read_bytes())
        for name, degrade in DEGRADATIONS.items():
            face = largest_central(degrade(probe_photo))
            if face is None:
                undetected[name] += 1
                continue
            similarity = float(np.dot(reference.embedding, face.embedding))
            rows.append({"degradation": name, "similarity": similarity, **face.quality})
        if count % 50 == 0:
            log(f"  {count}/{len(genuine)} pairs, {time.perf_counter() - started:.0f}s")
    return rows, undetected, time.perf_counter() - started


def read_rows(path: Path) -> tuple[list[dict], dict[str, int], float]:
    import csv

    rows, undetected = [], dict.fromkeys(DEGRADATIONS, 0)
    with path.open() as handle:
        for row in csv.DictReader(handle):
            if row["degradation"].startswith("undetected:"):
                undetected[row["degradation"].split(":", 1)[1]] = int(float(row["similarity"]))
            else:
                rows.append({k: v if k == "degradation" else float(v) for k, v in row.items()})
    return rows, undetected, 0.0


def bin_table(rows: list[dict], measure: str, threshold: float) -> list[dict]:
    _, edges, judged_on = BINS[measure]
    rows = [r for r in rows if r["degradation"].startswith(judged_on)]
    values = np.array([_value(r, measure) for r in rows])
    missed = np.array([r["similarity"] < threshold for r in rows])
    table = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (values >= low) & (values < high)
        faces = int(inside.sum())
        table.append(
            {
                "from": low,
                "below": high,
                "faces": faces,
                "missed": int(missed[inside].sum()),
                "fnmr": round(float(missed[inside].mean()), 4) if faces else None,
            }
        )
    return table


def low_cutoff(table: list[dict], direction: str) -> float | None:
    """The edge of the run of bins, from the worse end, with a miss rate of at least LOW_FNMR: below
    it ("min") or above it ("max") a face is `low`. A bin of fewer than MIN_FACES faces says too
    little either way: it neither extends nor ends the run."""
    ordered = table if direction == "min" else list(reversed(table))
    cutoff = None
    for row in ordered:
        if row["faces"] < MIN_FACES:
            continue
        if row["fnmr"] < LOW_FNMR:
            break
        cutoff = row["below"] if direction == "min" else row["from"]
    return cutoff


def level_check(rows: list[dict], threshold: float, gates: dict[str, float]) -> dict:
    """The miss rate of the faces at each level of domain/faces.py (in-sample: the same faces)."""
    from domain.faces import recognition_quality

    levels: dict[str, list[bool]] = {"high": [], "medium": [], "low": []}
    for row in rows:
        levels[recognition_quality(row, gates)].append(row["similarity"] < threshold)
    return {
        level: {"faces": len(misses), "fnmr": round(float(np.mean(misses)), 4) if misses else None}
        for level, misses in levels.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quality_levels", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw-dir", type=Path, help="folder with pairs.txt and images/ (default: LFW_DIR)")
    parser.add_argument("--pairs", type=int, default=200, help="genuine pairs, a balanced slice of every fold")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "quality_levels.json")
    parser.add_argument("--from-rows", type=Path, help="analyse the probes of an earlier run's CSV again")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    settings = get_settings()
    lfw_dir = args.lfw_dir or settings.lfw_dir
    machine = machine_info()
    if args.from_rows:
        rows, undetected, seconds = read_rows(args.from_rows)
    else:
        if lfw_dir is None or not (lfw_dir / "pairs.txt").exists():
            parser.error(f"no LFW pairs.txt under {lfw_dir} (pass --lfw-dir or set LFW_DIR)")
        rows, undetected, seconds = embed_probes(lfw_dir, args.pairs, log)
        # One row per probe: the measures and the similarity, no image and no embedding.
        write_csv(
            args.out.with_suffix(".csv"),
            rows + [{"degradation": f"undetected:{k}", "similarity": v} for k, v in undetected.items()],
        )
    threshold = settings.match_threshold
    by_degradation = {}
    for name in DEGRADATIONS:
        sims = [r["similarity"] for r in rows if r["degradation"] == name]
        probes = len(sims) + undetected[name]
        by_degradation[name] = {
            "probes": probes,
            "undetected": undetected[name],
            "missed_of_detected": int(sum(s < threshold for s in sims)),
            "fnmr_with_undetected": round((sum(s < threshold for s in sims) + undetected[name]) / max(probes, 1), 4),
            "median": {
                m: round(float(np.median([_value(r, m) for r in rows if r["degradation"] == name])), 1) for m in BINS
            }
            if sims
            else {},
        }
    tables = {measure: bin_table(rows, measure, threshold) for measure in BINS}
    cutoffs = {measure: low_cutoff(table, BINS[measure][0]) for measure, table in tables.items()}
    judged_on = {measure: list(BINS[measure][2]) for measure in BINS}
    gates = settings.enrollment_policy()
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "lfw_dir": str(lfw_dir),
        "machine": machine,
        "seconds": round(seconds, 1),
        "genuine_pairs": args.pairs,
        "threshold": threshold,
        "low_fnmr": LOW_FNMR,
        "min_faces_per_bin": MIN_FACES,
        "by_degradation": by_degradation,
        "fnmr_by_measure": tables,
        "measures_judged_on_degradations_starting_with": judged_on,
        "low_cutoffs": cutoffs,
        "enrollment_gates": gates,
        "levels_of_domain_faces": level_check(rows, threshold, gates),
        "levels_of_domain_faces_on_the_photos_as_they_are": level_check(
            [r for r in rows if r["degradation"] == "original"], threshold, gates
        ),
    }
    if args.from_rows and args.out.exists():  # the embedding run's facts stay; the analysis is new
        earlier = json.loads(args.out.read_text())
        result.update({key: earlier[key] for key in ("date", "machine", "seconds", "genuine_pairs") if key in earlier})
        result["analysed_again"] = datetime.now(UTC).isoformat(timespec="seconds")
    write_json(args.out, result)
    log(f"low cut-offs: {cutoffs}")
    log(f"levels: {result['levels_of_domain_faces']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
