"""Decoding only the pixels the model needs: the old full decode vs the reduced JPEG decode.

    python -m bench.decode --faces-dir ../shared/datasets/faces --lfw-dir ../shared/datasets/lfw-dev

For every photo of the real set and a sample of LFW, side by side, alternating which goes first
in every round:

- web validation: old = every pixel decoded (domain.images.validate_image as of commit 1d851d0);
  new = domain.images.validate_image (a JPEG at 1/8 scale, grayscale);
- worker: old = full decode, EXIF transpose copy, conversion, then detect and embed every face;
  new = workers.pipeline._analyze (a JPEG at the coarsest scale that keeps 2 x DET_SIZE on the
  long side, a finer decode only for a face too small to crop). Decode, detect and embed are
  timed separately (the pipeline's own StageTimer).

Quality, from the same runs: the number of faces old vs new (groups also against the count in
their name, NNN_k.jpg), the largest face's embedding old vs new and against an antialiased
full-resolution reference, its sharpness and size, and rank-1 identification with either set
of embeddings (bench.identify). Writes bench/results/decode.json.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import io
import re
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFilter, ImageOps

from bench.common import RESULTS_DIR, machine_info, write_json
from bench.identify import identify, labeled_photos
from config import Settings, load_settings
from domain import images as domain_images
from domain.images import JPEG_SCALES, decode, validate_image
from domain.timing import StageTimer
from workers.engine import CROP_MIN_FACE_SIDE, FaceEngine, crop_scale
from workers.pipeline import _analyze

BIG_PHOTO = "compreface_samples/personA/001_A.jpg"  # 4912x7360, 36 MP
REFERENCE_FACE_SIDE = 150  # the antialiased reference crops a face shrunk to about this size
STAGES = ("decode", "detect", "embed")


def old_validate(data: bytes) -> None:
    """The pixel work of validate_image before this change: open, check, decode every pixel."""
    image = Image.open(io.BytesIO(data))
    width, height = image.size
    if getattr(image, "n_frames", 1) > 1 or width * height <= 0:
        raise ValueError("unexpected")
    image.load()
    image.getexif().get(0x0112, 1)


def old_decode_bgr(data: bytes) -> np.ndarray:
    """decode_bgr before this change: full decode, an EXIF transpose copy, a conversion copy, BGR."""
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    plain = image.mode in ("RGB", "L", "CMYK", "YCbCr")
    rgb = np.asarray(image.convert("RGB") if plain else domain_images._to_rgb(image))
    return np.ascontiguousarray(rgb[:, :, ::-1])


def old_analyze(engine: FaceEngine, data: bytes, timer: StageTimer, max_faces: int) -> list:
    """workers.pipeline._analyze before this change."""
    with timer("decode"):
        bgr = old_decode_bgr(data)
    with timer("detect"):
        faces = engine.detect(bgr, max_faces)
    with timer("embed"):
        engine.embed(bgr, faces)
    return faces


def reference_embedding(engine: FaceEngine, bgr: np.ndarray, face) -> np.ndarray:
    """The face cropped from the full decode after an antialiased (INTER_AREA) shrink: no aliasing,
    and still more pixels than the 112x112 crop needs."""
    factor = max(1.0, face.quality["face_size"] / REFERENCE_FACE_SIDE)
    height, width = bgr.shape[:2]
    small = cv2.resize(bgr, (round(width / factor), round(height / factor)), interpolation=cv2.INTER_AREA)
    copy = dataclasses.replace(face, kps=(face.kps + 0.5) * small.shape[1] / width - 0.5)
    engine.embed(small, [copy])
    return copy.embedding


@dataclasses.dataclass
class Photo:
    name: str
    kind: str  # single | group | noface | lfw
    data: bytes

    def expected_faces(self) -> int | None:
        if self.kind == "noface":
            return 0
        match = re.fullmatch(r"\d+_(\d+)\.jpe?g", Path(self.name).name)
        return int(match[1]) if self.kind == "group" and match else None


def load_photos(faces_dir: Path | None, lfw_dir: Path | None, lfw_sample: int) -> list[Photo]:
    photos = []
    if faces_dir:
        with (faces_dir / "labels.tsv").open() as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                photos.append(Photo(row["path"], row["kind"], (faces_dir / row["path"]).read_bytes()))
    if lfw_dir and lfw_sample:
        every = sorted((lfw_dir / "images").glob("*/*.jpg"))
        step = max(1, len(every) // lfw_sample)
        for path in every[::step][:lfw_sample]:
            photos.append(Photo(f"lfw/{path.name}", "lfw", path.read_bytes()))
    return photos


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def time_validation(photo: Photo, rounds: int, settings: Settings) -> dict[str, float]:
    """Median ms of the old and new validation, alternating which runs first."""
    samples: dict[str, list[float]] = {"old": [], "new": []}
    variants = {"old": old_validate, "new": functools.partial(validate_image, settings=settings)}
    for round_ in range(rounds):
        for name in ("old", "new") if round_ % 2 == 0 else ("new", "old"):
            started = time.perf_counter()
            variants[name](photo.data)
            samples[name].append(time.perf_counter() - started)
    return {name: _ms(statistics.median(values)) for name, values in samples.items()}


def time_worker(engine: FaceEngine, photo: Photo, rounds: int, max_faces: int) -> tuple[dict, dict]:
    """Median ms per stage of the old and new worker paths, and each path's faces (first round)."""
    samples: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
    faces: dict[str, list] = {}
    for round_ in range(rounds):
        for name in ("old", "new") if round_ % 2 == 0 else ("new", "old"):
            timer = StageTimer()
            if name == "old":
                found = old_analyze(engine, photo.data, timer, max_faces)
            else:
                found = _analyze(engine, photo.data, timer, max_faces=max_faces)
            faces.setdefault(name, found)
            for stage in STAGES:
                samples[name].setdefault(stage, []).append(timer.seconds.get(stage, 0.0))
    medians = {
        name: {stage: _ms(statistics.median(v)) for stage, v in stages.items()} for name, stages in samples.items()
    }
    for stages in medians.values():
        stages["decode_detect"] = round(stages["decode"] + stages["detect"], 2)
        stages["total"] = round(sum(stages[stage] for stage in STAGES), 2)
    return medians, faces


def largest_face_quality(engine: FaceEngine, photo: Photo, old: list, new: list) -> dict | None:
    """How the largest face's embedding, sharpness and size moved (None unless both found one)."""
    if not old or not new:
        return None
    reference = reference_embedding(engine, old_decode_bgr(photo.data), old[0])
    return {
        "cos_old_new": round(float(old[0].embedding @ new[0].embedding), 4),
        "cos_old_reference": round(float(old[0].embedding @ reference), 4),
        "cos_new_reference": round(float(new[0].embedding @ reference), 4),
        "face_size": {"old": old[0].quality["face_size"], "new": new[0].quality["face_size"]},
        "sharpness": {"old": old[0].quality["sharpness"], "new": new[0].quality["sharpness"]},
        "det_score": {"old": old[0].quality["det_score"], "new": new[0].quality["det_score"]},
    }


def measure(engine: FaceEngine, photo: Photo, rounds: int, max_faces: int) -> dict:
    decoded = decode(photo.data, min_long_side=engine.decode_long_side())
    validation = time_validation(photo, rounds, engine.settings)
    worker, faces = time_worker(engine, photo, rounds, max_faces)
    image = Image.open(io.BytesIO(photo.data))
    return {
        "photo": photo.name,
        "kind": photo.kind,
        "format": image.format,
        "size": list(image.size),
        "megapixels": round(image.width * image.height / 1e6, 1),
        "scale": decoded.scale,
        "crop_scale": crop_scale(faces["new"], decoded.scale),
        "validate_ms": validation,
        "worker_ms": worker,
        "faces": {"old": len(faces["old"]), "new": len(faces["new"]), "expected": photo.expected_faces()},
        "largest": largest_face_quality(engine, photo, faces["old"], faces["new"]),
        "_embeddings": {name: found[0].embedding if found else None for name, found in faces.items()},
    }


def _timing_summary(rows: list[dict]) -> dict:
    """Medians over photos of the per-photo medians, their ratio, and the median per-photo ratio."""

    def pick(key: str, stage: str | None, name: str) -> list[float]:
        return [row[key][name][stage] if stage else row[key][name] for row in rows]

    summary = {"photos": len(rows)}
    for label, key, stage in [("validate", "validate_ms", None)] + [
        (stage, "worker_ms", stage) for stage in ("decode", "detect", "embed", "decode_detect", "total")
    ]:
        old, new = pick(key, stage, "old"), pick(key, stage, "new")
        ratios = [o / n for o, n in zip(old, new, strict=True) if n > 0]
        summary[label] = {
            "old_median_ms": round(statistics.median(old), 2),
            "new_median_ms": round(statistics.median(new), 2),
            "old_sum_ms": round(sum(old), 1),
            "new_sum_ms": round(sum(new), 1),
            "median_ratio_old_over_new": round(statistics.median(ratios), 2) if ratios else None,
        }
    return summary


def timing_summaries(rows: list[dict]) -> dict:
    groups = {
        "real_set": [r for r in rows if r["kind"] != "lfw"],
        "real_set_reduced": [r for r in rows if r["kind"] != "lfw" and r["scale"] > 1],
        "real_set_full_size": [r for r in rows if r["kind"] != "lfw" and r["scale"] == 1],
        "lfw_sample": [r for r in rows if r["kind"] == "lfw"],
    }
    return {name: _timing_summary(group) for name, group in groups.items() if group}


def quality_summary(rows: list[dict]) -> dict:
    groups = [r for r in rows if r["kind"] == "group"]
    singles = [r for r in rows if r["kind"] == "single"]
    largest = [r["largest"] for r in rows if r["largest"]]
    cosines = [q["cos_old_new"] for q in largest]
    full_size = [r["largest"]["cos_old_new"] for r in rows if r["largest"] and r["scale"] == 1]
    single_sharpness = {n: [r["largest"]["sharpness"][n] for r in singles if r["largest"]] for n in ("old", "new")}
    return {
        "group_photos": len(groups),
        "group_same_count_as_old": sum(r["faces"]["old"] == r["faces"]["new"] for r in groups),
        "group_count_as_named": {
            "named": sum(r["faces"]["expected"] is not None for r in groups),
            "old": sum(r["faces"]["old"] == r["faces"]["expected"] for r in groups),
            "new": sum(r["faces"]["new"] == r["faces"]["expected"] for r in groups),
        },
        "single_photos": len(singles),
        "single_undetected": {n: sum(not r["faces"][n] for r in singles) for n in ("old", "new")},
        "single_newly_undetected": [r["photo"] for r in singles if r["faces"]["old"] and not r["faces"]["new"]],
        "noface_detections": {n: sum(r["faces"][n] for r in rows if r["kind"] == "noface") for n in ("old", "new")},
        "any_count_changed": [r["photo"] for r in rows if r["faces"]["old"] != r["faces"]["new"]],
        "largest_face_cos_old_new": {"min": min(cosines), "median": statistics.median(cosines), "photos": len(cosines)},
        "full_size_photos_cos_old_new_min": min(full_size) if full_size else None,
        "reduced_photos_largest_face": [
            {"photo": r["photo"], "scale": r["scale"], **r["largest"]} for r in rows if r["largest"] and r["scale"] > 1
        ],
        "single_sharpness_min": {name: min(values) for name, values in single_sharpness.items() if values},
        "single_sharpness_median": {name: statistics.median(v) for name, v in single_sharpness.items() if v},
        "refined_decodes": [r["photo"] for r in rows if r["crop_scale"] != r["scale"]],
    }


def _bundled_group_photo() -> Image.Image:
    """t1.jpg from the insightface package (six faces, 1280x886): no real face is copied anywhere."""
    import importlib.util

    origin = Path(importlib.util.find_spec("insightface").origin)
    return Image.open(origin.parent / "data" / "images" / "t1.jpg").convert("RGB")


def sharpness_near_the_gate(engine: FaceEngine, radii: tuple[int, ...] = (0, 4, 8, 12, 16)) -> list[dict]:
    """t1.jpg enlarged 4x (5120x3544, decoded at 1/4) and blurred: the sharpness of its six faces
    old vs new. Crops from the reduced decode lose the aliasing a bilinear shrink adds to sharp
    faces; blurred faces, the ones near ENROLL_MIN_SHARPNESS, should read about the same."""
    photo = _bundled_group_photo()
    photo = photo.resize((photo.width * 4, photo.height * 4), Image.BICUBIC)
    rows = []
    for radius in radii:
        buffer = io.BytesIO()
        (photo.filter(ImageFilter.GaussianBlur(radius)) if radius else photo).save(buffer, "JPEG", quality=92)
        old = old_analyze(engine, buffer.getvalue(), StageTimer(), 20)
        new = _analyze(engine, buffer.getvalue(), StageTimer(), max_faces=20)
        by_x = [sorted(faces, key=lambda face: face.bbox[0]) for faces in (old, new)]
        rows.append(
            {
                "blur_radius": radius,
                "faces": {"old": len(old), "new": len(new)},
                "sharpness_old": [face.quality["sharpness"] for face in by_x[0]],
                "sharpness_new": [face.quality["sharpness"] for face in by_x[1]],
            }
        )
    return rows


SWEEP_BINS = (0, 40, 60, 80, 120, 100_000)  # decoded face side, px


def crop_size_sweep(engine: FaceEngine, photos: list[Photo]) -> dict:
    """How many decoded pixels a face needs for its crop to be as good as the old full-size one.

    The largest face of every JPEG of the real set (detected on the full decode) is cropped from
    the photo decoded at 1/2, 1/4 and 1/8 and compared with the antialiased reference, next to
    the old crop's similarity to the same reference; binned by the face's side in the decoded
    image. This is what CROP_MIN_FACE_SIDE was chosen from."""
    rows = []
    for photo in photos:
        full = old_decode_bgr(photo.data)
        faces = engine.detect(full) if photo.kind != "lfw" and photo.data[:3] == b"\xff\xd8\xff" else []
        if not faces:
            continue
        engine.embed(full, faces[:1])
        face, reference = faces[0], reference_embedding(engine, full, faces[0])
        for scale in JPEG_SCALES:
            decoded = decode(photo.data, min_long_side=1, max_scale=scale)
            copy = dataclasses.replace(face)
            engine.embed(decoded.bgr, [copy], scale=decoded.scale)
            side = face.quality["face_size"] / decoded.scale
            rows.append((side, float(copy.embedding @ reference), float(face.embedding @ reference)))
    summary = {}
    for low, high in zip(SWEEP_BINS, SWEEP_BINS[1:], strict=False):
        inside = [(new, old) for side, new, old in rows if low <= side < high]
        if inside:
            summary[f"{low}-{high}px"] = {
                "crops": len(inside),
                "cos_reference_new_median": round(statistics.median(new for new, _ in inside), 4),
                "cos_reference_new_min": round(min(new for new, _ in inside), 4),
                "cos_reference_old_median": round(statistics.median(old for _, old in inside), 4),
                "new_minus_old_median": round(statistics.median(new - old for new, old in inside), 4),
            }
    return summary


def identification(rows: list[dict], faces_dir: Path, threshold: float) -> list[dict]:
    """bench.identify's rank-1 with the old and with the new embeddings of the largest face."""
    photos = labeled_photos(faces_dir)
    by_name = {row["photo"]: row["_embeddings"] for row in rows}
    results = []
    for name in ("old", "new"):
        embeddings = {path: by_name[path][name] for paths in photos.values() for path in paths}
        for enrolled in (1, 2):
            result = identify(embeddings, photos, enrolled, threshold)
            results.append({"embeddings": name, **{k: v for k, v in result.items() if k != "failures"}})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.decode")
    parser.add_argument("--faces-dir", type=Path)
    parser.add_argument("--lfw-dir", type=Path)
    parser.add_argument("--lfw-sample", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=6, help="old/new pairs per photo of the real set")
    parser.add_argument("--lfw-rounds", type=int, default=4)
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "decode.json")
    args = parser.parse_args(argv)
    settings = load_settings()
    engine = FaceEngine(settings)
    photos = load_photos(args.faces_dir, args.lfw_dir, args.lfw_sample)
    for photo in photos[:5]:  # the first runs of a session are slow: untimed
        _analyze(engine, photo.data, StageTimer())
    machine = machine_info()
    started, rows = time.perf_counter(), []
    for count, photo in enumerate(photos, 1):
        rounds = args.lfw_rounds if photo.kind == "lfw" else args.rounds
        rows.append(measure(engine, photo, rounds, settings.default_max_faces))
        if count % 25 == 0:
            print(f"  {count}/{len(photos)} photos", flush=True)
    document = {
        "machine": machine,
        "command": "python -m bench.decode " + " ".join(argv if argv is not None else sys.argv[1:]),
        "seconds": round(time.perf_counter() - started, 1),
        "settings": {
            "det_size": settings.det_size,
            "det_size_min": settings.det_size_min,
            "decode_long_side": engine.decode_long_side(),
            "crop_min_face_side": CROP_MIN_FACE_SIDE,
            "ort_threads": settings.ort_intra_threads(),
            "max_faces": settings.default_max_faces,
        },
        "rounds": {"real_set": args.rounds, "lfw": args.lfw_rounds},
        "big_photo": next(
            ({k: v for k, v in r.items() if k != "_embeddings"} for r in rows if r["photo"] == BIG_PHOTO), None
        ),
        "timing": timing_summaries(rows),
        "quality": quality_summary(rows),
        "identification": identification(rows, args.faces_dir, settings.match_threshold) if args.faces_dir else [],
        "sharpness_near_the_gate": sharpness_near_the_gate(engine),
        "crop_size_sweep": crop_size_sweep(engine, photos),
        "photos": [{k: v for k, v in row.items() if k != "_embeddings"} for row in rows],
    }
    write_json(args.output, document)
    print_summary(document)
    return 0


def print_summary(document: dict) -> None:
    for name, summary in document["timing"].items():
        print(f"{name} ({summary['photos']} photos), medians ms old -> new (median per-photo ratio):")
        for stage in ("validate", "decode", "detect", "decode_detect", "total"):
            s = summary[stage]
            ratio = s["median_ratio_old_over_new"]
            print(f"  {stage:14} {s['old_median_ms']:9.1f} -> {s['new_median_ms']:9.1f}  ({ratio}x)")
    big = document["big_photo"]
    if big:
        print(f"36 MP photo: validate {big['validate_ms']}, worker {big['worker_ms']}")
    quality = document["quality"]
    print({k: v for k, v in quality.items() if k != "reduced_photos_largest_face"})


if __name__ == "__main__":
    raise SystemExit(main())
