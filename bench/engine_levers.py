"""The engine's levers, side by side in one run (issue 15; PERFORMANCE.md section 11).

- *decode*: JPEGs through Pillow (draft, RGB, a BGR copy) vs libjpeg-turbo straight to BGR
  (simplejpeg, domain/images.py), the same photos at the worker's scale; CPU ms a photo and
  whether any pixel differs.
- *recognizer*: the bundled ArcFace as shipped vs with its PRelus rewritten to Mul + Max
  (workers/graphs.py), the same crops, one face a call as the service's engine sends them
  (alternating which runs first), CPU ms a face and the largest difference of the outputs.
- *detector*: SCRFD on a square letterbox of the adaptive size (as before) vs an input that keeps
  the photo's aspect (workers/engine.py `detector_input_shape`), the same decoded photos; CPU ms
  a photo, faces found by each and how far their boxes move.
- *engine*: the worker's whole `_analyze` (decode, detect, embed every face) with no lever vs
  with all three, CPU ms a photo: what a job's model side costs, compared with the hand-written
  loop's CPU a photo in `make bench-real`.

Both sets: the labelled real photos (`FACES_DATASET_DIR`) and LFW photos (`LFW_DIR`), each photo
`--rounds` times a variant, alternating. Quality: faces found per labelled photo and
`bench.identify`'s rank-1 with the new engine, against the old one (`bench.backends`'s check).

    .venv/bin/python -m bench.engine_levers --faces-dir ../shared/datasets/faces \\
        --lfw-dir ../shared/datasets/lfw-dev --rounds 3

Output: `bench/results/engine_levers.json`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from unittest import mock

import numpy as np

from bench.backends import BASELINE, load_avg, log, real_photo_quality, spread
from bench.common import RESULTS_DIR, machine_info, write_json


def _cpu(call, *args) -> tuple[float, object]:
    start = time.process_time()
    result = call(*args)
    return time.process_time() - start, result


def photos(faces_dir: Path | None, lfw_dir: Path | None, lfw_count: int) -> dict[str, list[Path]]:
    sets = {}
    if faces_dir and faces_dir.is_dir():
        sets["real"] = sorted(p for p in faces_dir.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})
    if lfw_dir and (lfw_dir / "images").is_dir():
        sets["lfw"] = spread(sorted((lfw_dir / "images").glob("*/*.jpg")), lfw_count)
    return sets


def old_engine(settings):
    """The engine as it was before the levers: the shipped recognizer graph, a square detector input."""
    import onnxruntime as ort

    from workers.engine import FaceEngine

    engine = FaceEngine(settings)
    options = engine.recognizer.session.get_session_options()
    engine.recognizer.session = ort.InferenceSession(
        str(engine.pack.recognizer), sess_options=options, providers=engine.providers
    )
    engine.detector_input_shape = lambda shape: (max(FaceEngine.detector_input_shape(engine, shape)),) * 2
    return engine


def pillow_decode(data: bytes, min_long_side: int = 0, max_scale: int = 8):
    """domain.images.decode as it was before JPEGs went through simplejpeg: Pillow for every format."""
    from domain.images import _exif_orientation, _open, _pillow_decode

    image = _open(data)
    return _pillow_decode(image, _exif_orientation(image), min_long_side, max_scale)


def old_analyze(engine, data: bytes, timer):
    """The worker's `_analyze` with the old decode."""
    from workers import pipeline

    with mock.patch.object(pipeline, "decode", pillow_decode):
        return pipeline._analyze(engine, data, timer)


def compare(old, new, paths: list[Path], rounds: int) -> dict:
    from domain.images import decode
    from domain.timing import StageTimer
    from workers.engine import from_photo
    from workers.pipeline import _analyze

    warnings.filterwarnings("ignore", category=FutureWarning)  # scikit-image's, inside norm_crop
    from insightface.utils import face_align

    cpu = {key: {"old": [], "new": []} for key in ("decode", "detector", "recognizer", "engine")}
    analyze = {"old": old_analyze, "new": _analyze}
    decoders = {"old": pillow_decode, "new": decode}
    pixels_differing = []
    faces = {"old": 0, "new": 0}
    box_shift, output_diff, photos_differing = [], 0.0, []
    for index, path in enumerate(paths):
        data = path.read_bytes()
        decoded = decode(data, min_long_side=new.decode_long_side())
        order = ("old", "new") if index % 2 == 0 else ("new", "old")
        engines = {"old": old, "new": new}
        found = {}
        for _ in range(rounds):
            for name in order:
                engine = engines[name]
                seconds, found[name] = _cpu(engine._detect, decoded.bgr)
                cpu["detector"][name].append(seconds)
                seconds, pixels = _cpu(decoders[name], data, new.decode_long_side())
                cpu["decode"][name].append(seconds)
                if not np.array_equal(pixels.bgr, decoded.bgr):
                    pixels_differing.append(path.name)
                seconds, _ = _cpu(analyze[name], engine, data, StageTimer())
                cpu["engine"][name].append(seconds)
        faces["old"] += len(found["old"])
        faces["new"] += len(found["new"])
        if len(found["old"]) != len(found["new"]):
            photos_differing.append(path.name)
        else:
            for a, b in zip(
                sorted(found["old"], key=lambda f: f.bbox), sorted(found["new"], key=lambda f: f.bbox), strict=True
            ):
                side = max(a.bbox[2] - a.bbox[0], a.bbox[3] - a.bbox[1])
                box_shift.append(float(np.abs(np.subtract(a.bbox, b.bbox)).max() / side))
        crops = [
            face_align.norm_crop(decoded.bgr, landmark=from_photo(f.kps, 1)) for f in found["new"]
        ]  # the decoded image's own pixels: `_detect` returns them
        for crop in crops:
            for _ in range(rounds):
                outputs = {}
                for name in order:
                    seconds, outputs[name] = _cpu(engines[name].recognizer.get_feat, [crop])
                    cpu["recognizer"][name].append(seconds)
                output_diff = max(output_diff, float(np.abs(outputs["old"] - outputs["new"]).max()))
    summary = {}
    for key, samples in cpu.items():
        old_ms, new_ms = (statistics.median(samples[n]) * 1000 if samples[n] else None for n in ("old", "new"))
        mean_old, mean_new = (float(np.mean(samples[n])) * 1000 if samples[n] else None for n in ("old", "new"))
        summary[key] = {
            "unit": "a face" if key == "recognizer" else "a photo",
            "median_ms": {"old": _round(old_ms), "new": _round(new_ms)},
            "mean_ms": {"old": _round(mean_old), "new": _round(mean_new)},
            "speedup_of_means": _round(mean_old / mean_new) if mean_old and mean_new else None,
            "samples": len(samples["new"]),
        }
    summary["quality"] = {
        "faces_found": faces,
        "photos_with_another_face_count": photos_differing,
        "photos_decoded_to_other_pixels": sorted(set(pixels_differing)),
        "box_shift_max_fraction_of_face": _round(max(box_shift, default=0.0), 4),
        "box_shift_median_fraction_of_face": _round(statistics.median(box_shift) if box_shift else 0.0, 4),
        "recognizer_output_max_abs_difference": output_diff,
    }
    return summary


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_levers", description=__doc__.split("\n\n")[0])
    # Path("") is ".", which is truthy: an unset variable must leave the set out, not read this tree.
    parser.add_argument("--faces-dir", type=Path, default=os.environ.get("FACES_DATASET_DIR") or None)
    parser.add_argument("--lfw-dir", type=Path, default=os.environ.get("LFW_DIR") or None)
    parser.add_argument("--lfw-photos", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", default="engine_levers")
    args = parser.parse_args(argv)
    os.environ.setdefault("ORT_THREADS", "1")  # the service's worker: one thread a process
    os.environ.setdefault("JWT_SECRET_KEY", "bench-engine-levers-not-a-secret")
    sets = photos(args.faces_dir, args.lfw_dir, args.lfw_photos)
    if not sets:
        log("no photos: set --faces-dir and/or --lfw-dir (../shared/datasets/faces, ../shared/datasets/lfw-dev)")
        return 2
    from config import load_settings
    from workers.engine import FaceEngine

    settings = load_settings()
    old, new = old_engine(settings), FaceEngine(settings)
    payload = {"benchmark": "bench.engine_levers", "command": " ".join(sys.argv), "machine": machine_info()}
    payload["load_before"] = load_avg()
    for name, paths in sets.items():
        log(f"{name}: {len(paths)} photos x {args.rounds} rounds")
        payload[name] = {"photos": len(paths), **compare(old, new, paths, args.rounds)}
    if "real" in sets:
        log("real: faces per labelled photo and rank-1, old vs new engine")
        payload["real"]["identification"] = real_photo_quality({BASELINE: old, "new": new}, args.faces_dir, settings)
    payload["load_after"] = load_avg()
    write_json(RESULTS_DIR / f"{args.output}.json", payload)
    log(f"wrote bench/results/{args.output}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
