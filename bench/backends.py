"""Inference backends A/B on this CPU: onnxruntime's CPU provider vs OpenVINO, fp32 vs int8 (issue 15).

    python -m bench.backends [--lfw-dir DIR] [--faces-dir DIR] [--cache-dir DIR] [--rounds N]

Variants: a provider (onnxruntime's CPUExecutionProvider, or OpenVINOExecutionProvider where the
`onnxruntime-openvino` build is the installed `onnxruntime`: a separate venv, see PERFORMANCE.md)
and a model for each of the detector (SCRFD-500M) and the recognizer (w600k_mbf): the bundled fp32
file, or an int8 one quantized here with onnxruntime.quantization: static (QDQ or QOperator,
calibrated on aligned crops / detector inputs of LFW dev photos that no View 2 pair uses) or
dynamic. The quantized files are built into the cache folder (--cache-dir), never into the
repository: they derive from the InsightFace models, whose licence is non-commercial.

Speed, in one run with every session open at once and interleaved per input (variant order
reversed every other round), 1 intra-op thread per session (the service's ORT_THREADS on 2 cores
with 2 worker processes), no thread spinning: detector session ms per photo at 640 (real photos,
decoded as the worker decodes them) and 320 (LFW photos), recognizer ms per face at batch 1 and
batch 8. Medians; speedup = baseline median / variant median.

Quality, for the baseline and every variant at least MIN_SPEEDUP faster on a stage: LFW View 2
k-fold accuracy through the engine (the service's detector sizing: 320 on LFW's 250 px photos;
bench.lfw's protocol), rank-1 identification on the labelled real photos (bench.identify), and the
faces found on every labelled real photo (as the worker decodes and detects), against the baseline
and the group photos' labelled counts. Results: bench/results/backends.json.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import RESULTS_DIR, machine_info, write_json
from config import Settings, load_settings
from domain.images import decode, decode_bgr
from workers.engine import BUNDLED_FILES, FaceEngine, bundled_pack_dir

BASELINE = "cpu_fp32"
OPENVINO = "OpenVINOExecutionProvider"
CPU = "CPUExecutionProvider"
DETECTOR_FILE, RECOGNIZER_FILE = "scrfd_500m_bnkps.onnx", "w600k_mbf.onnx"
QUANT_OPSET = 13
MIN_SPEEDUP = 1.10  # a variant this much faster on some stage gets the quality checks
CALIBRATION_PHOTOS = 200  # the recognizer calibrates on their aligned crops
DETECTOR_CALIBRATION_PHOTOS = 60  # ...the detector on the first 60 of them at 320 and at 640
TIMING_PHOTOS = 8
LFW_DET_SIZE = 320  # the service's detector size on a 250 px LFW photo (DET_SIZE_MIN)
GROUP_NAME = re.compile(r"\d+_(\d+)\.jpe?g$")
DEFAULT_CACHE = Path(os.environ.get("BENCH_CACHE_DIR", "/tmp/faceapi-bench-cache")) / "backends"


@dataclass(frozen=True)
class Variant:
    name: str
    provider: str
    detector: str  # "fp32" or a quantized model's name (see build_models)
    recognizer: str


VARIANTS = [
    Variant(BASELINE, CPU, "fp32", "fp32"),
    Variant("cpu_rec_int8_qdq", CPU, "fp32", "int8_qdq"),
    Variant("cpu_rec_int8_qop", CPU, "fp32", "int8_qop"),
    Variant("cpu_rec_int8_dynamic", CPU, "fp32", "int8_dynamic"),
    Variant("cpu_det_int8_qdq", CPU, "int8_qdq", "fp32"),
    Variant("openvino_fp32", OPENVINO, "fp32", "fp32"),
    Variant("openvino_rec_int8_qdq", OPENVINO, "fp32", "int8_qdq"),
    Variant("openvino_det_int8_qdq", OPENVINO, "int8_qdq", "fp32"),
    Variant("openvino_int8_qdq", OPENVINO, "int8_qdq", "int8_qdq"),
]

# Keeps the quality targets and is faster on detection (PERFORMANCE.md, section 10): an opt-in.
ADOPTED = next(v for v in VARIANTS if v.name == "openvino_det_int8_qdq")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_avg() -> dict:
    """`uptime`'s line and the load averages: the machine is shared with other engineers' runs."""
    line = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    return {"uptime": line, "loadavg": [round(x, 2) for x in os.getloadavg()]}


# ---------------------------------------------------------------------------------------------
# Inputs: photos, detector blobs, aligned crops


def lfw_photos_outside_pairs(lfw_dir: Path) -> tuple[list[Path], list[Path]]:
    """LFW dev photos that no View 2 pair uses (for calibration), and those the pairs use."""
    from bench.lfw import read_pairs

    pairs, _ = read_pairs(lfw_dir / "pairs.txt")
    used = {name for pair in pairs for name in (pair.a, pair.b)}
    every = sorted((lfw_dir / "images").glob("*/*.jpg"))
    outside = [p for p in every if f"{p.parent.name}/{p.name}" not in used]
    return outside, [lfw_dir / "images" / name for name in sorted(used)]


def spread(items: list, count: int) -> list:
    """`count` items evenly spread over the list (deterministic)."""
    step = max(1, len(items) // count)
    return items[::step][:count]


def detector_blob(detector, bgr: np.ndarray, side: int) -> np.ndarray:
    """The detector's input for a photo at `side`, letterboxed as insightface's SCRFD.detect does."""
    import cv2

    height, width = bgr.shape[:2]
    scale = side / max(height, width)
    new_w, new_h = int(width * scale), int(height * scale)
    canvas = np.zeros((side, side, 3), dtype=np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(bgr, (new_w, new_h))
    mean = detector.input_mean
    return cv2.dnn.blobFromImage(canvas, 1.0 / detector.input_std, (side, side), (mean, mean, mean), swapRB=True)


def recognizer_blob(recognizer, crops: list[np.ndarray]) -> np.ndarray:
    """The recognizer's input for aligned 112x112 crops, as ArcFaceONNX.get_feat builds it."""
    import cv2

    mean = recognizer.input_mean
    return cv2.dnn.blobFromImages(
        crops, 1.0 / recognizer.input_std, recognizer.input_size, (mean, mean, mean), swapRB=True
    )


def aligned_crops(engine: FaceEngine, paths: list[Path]) -> list[np.ndarray]:
    """The aligned crop of the face nearest the centre of each photo (bench.lfw's choice)."""
    from insightface.utils import face_align

    from bench.lfw import nearest_centre

    crops = []
    for path in paths:
        bgr = decode_bgr(path.read_bytes())
        faces = engine.detect(bgr)
        if faces:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                crops.append(face_align.norm_crop(bgr, landmark=nearest_centre(faces, bgr.shape).kps))
    return crops


# ---------------------------------------------------------------------------------------------
# Quantized models, built into the cache folder


class BlobReader:
    """onnxruntime.quantization's CalibrationDataReader over prepared input blobs."""

    def __init__(self, input_name: str, blobs: list[np.ndarray]):
        self.input_name, self.blobs = input_name, iter(blobs)

    def get_next(self) -> dict | None:
        blob = next(self.blobs, None)
        return None if blob is None else {self.input_name: blob}


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]


def build_models(cache: Path, detector_blobs: list[np.ndarray], crops_blobs: list[np.ndarray]) -> dict:
    """{(role, kind): path} of every model the variants use; quantized ones are built once per
    calibration set (their folder's name is a hash of the inputs' sizes and the source hashes)."""
    import onnx
    import onnx.version_converter
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = bundled_pack_dir()
    key = _fingerprint(BUNDLED_FILES, QUANT_OPSET, len(detector_blobs), len(crops_blobs))
    folder = cache / f"models-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    models = {("detector", "fp32"): source / DETECTOR_FILE, ("recognizer", "fp32"): source / RECOGNIZER_FILE}
    # AVX2 without VNNI: activations uint8, weights int8 with reduce_range (7 bits), so that the u8 x s8
    # multiply-adds cannot saturate (onnxruntime's quantization guide); per-channel weights.
    static = {
        "int8_qdq": QuantFormat.QDQ,
        "int8_qop": QuantFormat.QOperator,
    }
    for role, file, blobs in (
        ("detector", DETECTOR_FILE, detector_blobs),
        ("recognizer", RECOGNIZER_FILE, crops_blobs),
    ):
        prepared = folder / f"{Path(file).stem}_pre.onnx"
        if not prepared.exists():
            # Per-channel QDQ needs DequantizeLinear's axis: opset 13 (the bundled files are opset 11).
            upgraded = folder / f"{Path(file).stem}_opset{QUANT_OPSET}.onnx"
            onnx.save(onnx.version_converter.convert_version(onnx.load(str(source / file)), QUANT_OPSET), str(upgraded))
            quant_pre_process(str(upgraded), str(prepared), skip_symbolic_shape=True)  # sympy is not a dependency
        input_name = ort.InferenceSession(str(prepared), providers=[CPU]).get_inputs()[0].name
        for kind, quant_format in static.items():
            target = folder / f"{Path(file).stem}_{kind}.onnx"
            if not target.exists():
                started = time.perf_counter()
                quantize_static(
                    str(prepared),
                    str(target),
                    BlobReader(input_name, blobs),
                    quant_format=quant_format,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    per_channel=True,
                    reduce_range=True,
                    calibrate_method=CalibrationMethod.MinMax,
                )
                log(f"built {target.name} in {time.perf_counter() - started:.0f}s")
            models[(role, kind)] = target
        target = folder / f"{Path(file).stem}_int8_dynamic.onnx"
        if not target.exists():
            quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QUInt8, per_channel=True)
        models[(role, "int8_dynamic")] = target
    return models


def pack_dir(cache: Path, models: dict, variant: Variant) -> Path | None:
    """A MODEL_PACK_DIR for the engine holding the variant's two files (None: the bundled pack)."""
    if variant.detector == "fp32" and variant.recognizer == "fp32":
        return None
    return write_pack(cache / "packs" / f"det_{variant.detector}-rec_{variant.recognizer}", models, variant)


def write_pack(folder: Path, models: dict, variant: Variant) -> Path:
    """The variant's detector and recognizer in `folder` with a SHA256SUMS file. An fp32 file keeps
    its name: the recognizer's name is the model name stored with every embedding, so a pack with
    the bundled recognizer keeps a gallery's embeddings comparable."""
    files = {
        f"{stem}.onnx" if kind == "fp32" else f"{stem}_{kind}.onnx": models[(role, kind)]
        for role, kind, stem in (
            ("detector", variant.detector, Path(DETECTOR_FILE).stem),
            ("recognizer", variant.recognizer, Path(RECOGNIZER_FILE).stem),
        )
    }
    others = sorted(p.name for p in folder.glob("*.onnx") if p.name not in files) if folder.exists() else []
    if others:  # the engine picks the first file by prefix: a stray model would be loaded instead
        raise SystemExit(f"{folder} holds other models ({', '.join(others)}): give an empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        shutil.copyfile(source, folder / name)
    sums = [f"{hashlib.sha256((folder / name).read_bytes()).hexdigest()}  {name}" for name in files]
    (folder / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    return folder


# ---------------------------------------------------------------------------------------------
# Sessions and timing


def session_options(threads: int):
    """The engine's options (workers/engine.py): intra-op threads, no spinning, all optimisations."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def providers_for(variant: Variant, threads: int) -> list:
    if variant.provider == OPENVINO:
        # OpenVINO keeps its own thread pool: num_of_threads is its counterpart of intra_op threads.
        return [(OPENVINO, {"device_type": "CPU", "num_of_threads": str(threads)}), CPU]
    return [CPU]


@dataclass
class Sessions:
    detector: object
    recognizer: object


def open_sessions(variant: Variant, models: dict, threads: int) -> Sessions:
    import onnxruntime as ort

    def one(path: Path):
        return ort.InferenceSession(
            str(path), sess_options=session_options(threads), providers=providers_for(variant, threads)
        )

    return Sessions(one(models[("detector", variant.detector)]), one(models[("recognizer", variant.recognizer)]))


def timed_run(session, blob: np.ndarray) -> float:
    name = session.get_inputs()[0].name
    started = time.perf_counter()
    session.run(None, {name: blob})
    return time.perf_counter() - started


def time_variants(sessions: dict[str, Sessions], cases: dict[str, tuple[str, list[np.ndarray]]], rounds: int) -> dict:
    """{case: {variant: [seconds]}}, each input run by every variant in turn (ABAB), the order
    reversed every other round; a warm-up pass (untimed) first."""
    names = list(sessions)
    samples = {case: {name: [] for name in names} for case in cases}
    for round_ in range(-1, rounds):
        order = names if round_ % 2 == 0 else names[::-1]
        for case, (role, blobs) in cases.items():
            for blob in blobs:
                for name in order:
                    seconds = timed_run(getattr(sessions[name], role), blob)
                    if round_ >= 0:
                        samples[case][name].append(seconds)
        log(f"timing round {round_ + 1}/{rounds} done; load {os.getloadavg()[0]:.2f}")
    return samples


def summarize_speed(samples: dict, per_item: dict[str, int]) -> dict:
    """Median ms per photo (detector) or per face (recognizer), and the speedup vs the baseline."""
    out = {}
    for case, by_variant in samples.items():
        base = statistics.median(by_variant[BASELINE])
        out[case] = {
            name: {
                "median_ms": round(statistics.median(values) * 1000 / per_item[case], 3),
                "p90_ms": round(float(np.percentile(values, 90)) * 1000 / per_item[case], 3),
                "samples": len(values),
                "speedup": round(base / statistics.median(values), 3),
            }
            for name, values in by_variant.items()
        }
    return out


def changed_roles(variant: Variant) -> set[str]:
    """The models whose sessions differ from the baseline's (the others are an A/A control)."""
    if variant.provider != CPU:
        return {"detector", "recognizer"}
    return {
        role for role, kind in (("detector", variant.detector), ("recognizer", variant.recognizer)) if kind != "fp32"
    }


def best_speedup(variant: Variant, speed: dict) -> float:
    roles = changed_roles(variant)
    return max(row[variant.name]["speedup"] for case, row in speed.items() if case.split("_")[0] in roles)


# ---------------------------------------------------------------------------------------------
# Quality through the engine


def engine_for(settings: Settings, variant: Variant, pack: Path | None, threads: int) -> FaceEngine:
    configured = settings.model_copy(
        update={"model_pack_dir": pack, "ort_providers": (variant.provider,), "ort_threads": threads}
    )
    engine = FaceEngine(configured)
    for session in (engine.detector.session, engine.recognizer.session):  # no silent fallback (see the engine)
        if session.get_providers()[0] != variant.provider:
            raise SystemExit(f"{variant.name}: a session runs on {session.get_providers()}, not {variant.provider}")
    return engine


def lfw_quality(engines: dict[str, FaceEngine], lfw_dir: Path, settings: Settings) -> dict:
    """bench.lfw's k-fold accuracy for every engine, each photo decoded once for all of them."""
    from bench.lfw import DetectorPass, evaluate, fallback_face, nearest_centre, read_pairs
    from bench.lfw import Variant as LfwVariant

    pairs, _ = read_pairs(lfw_dir / "pairs.txt")
    names = sorted({name for pair in pairs for name in (pair.a, pair.b)})
    runs = {name: DetectorPass((LFW_DET_SIZE, settings.det_thresh)) for name in engines}
    for count, image in enumerate(names, 1):
        bgr = decode_bgr((lfw_dir / "images" / image).read_bytes())
        for variant, engine in engines.items():
            faces = engine.detect(bgr)
            face = nearest_centre(faces, bgr.shape) if faces else fallback_face(bgr.shape)
            engine.embed(bgr, [face])
            run = runs[variant]
            run.plain[image], run.detected[image], run.faces_found[image] = face.embedding, bool(faces), len(faces)
        if count % 500 == 0:
            log(f"  lfw: {count}/{len(names)} photos")
    lfw_variant = LfwVariant(LFW_DET_SIZE, settings.det_thresh)
    out = {}
    for variant, run in runs.items():
        run.model = engines[variant].model_name
        result = evaluate(lfw_variant, run, pairs, settings, len(names))
        out[variant] = {
            "accuracy_mean": round(result["accuracy_mean"], 6),
            "accuracy_std": round(result["accuracy_std"], 6),
            "fold_accuracies": [f["accuracy"] for f in result["folds"]],
            "auc": round(result["auc"], 6),
            "tar_at_far_1e-3": round(result["tar_at_far_1e-3"], 6),
            "threshold_at_far_1e-3": result["threshold_at_far_1e-3"],
            "undetected": result["undetected"],
            "multi_face_images": result["multi_face_images"],
            "pairs": result["pairs"],
            "_plain": run.plain,
        }
    baseline = out[BASELINE]["_plain"]
    for result in out.values():
        plain = result.pop("_plain")
        cosines = np.array([float(plain[name] @ baseline[name]) for name in names])
        result["cosine_to_baseline"] = {
            "min": round(float(cosines.min()), 4),
            "median": round(float(np.median(cosines)), 4),
        }
    return out


def real_photo_quality(engines: dict[str, FaceEngine], faces_dir: Path, settings: Settings) -> dict:
    """Faces found per labelled photo (the worker's decode and detect) and bench.identify's rank-1."""
    from bench.identify import embed_largest, identify, labeled_photos

    with (faces_dir / "labels.tsv").open() as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    counts: dict[str, dict[str, int]] = {name: {} for name in engines}
    for row in rows:
        data = (faces_dir / row["path"]).read_bytes()
        for name, engine in engines.items():
            decoded = decode(data, min_long_side=engine.decode_long_side())
            counts[name][row["path"]] = len(engine.detect(decoded.bgr, scale=decoded.scale))
    named = {
        row["path"]: int(match[1]) if (match := GROUP_NAME.search(row["path"])) else None
        for row in rows
        if row["kind"] == "group"
    }
    photos = labeled_photos(faces_dir)
    out = {}
    for name, engine in engines.items():
        embeddings = {path: embed_largest(engine, faces_dir / path) for paths in photos.values() for path in paths}
        ranks = {
            r["enrolled_per_person"]: r["rank1"]
            for r in (identify(embeddings, photos, k, settings.match_threshold) for k in (1, 2))
        }
        differing = {p: [counts[BASELINE][p], n] for p, n in counts[name].items() if n != counts[BASELINE][p]}
        out[name] = {
            "photos": len(rows),
            "faces_found_total": sum(counts[name].values()),
            "photos_with_other_count_than_baseline": differing,
            "groups_named": sum(n is not None for n in named.values()),
            "groups_named_count_met": sum(counts[name][p] == n for p, n in named.items() if n is not None),
            "rank1": {f"enrolled_{k}": v for k, v in ranks.items()},
        }
    return out


# ---------------------------------------------------------------------------------------------


def prepare_inputs(engine: FaceEngine, lfw_dir: Path, faces_dir: Path | None) -> dict:
    outside, used = lfw_photos_outside_pairs(lfw_dir)
    calibration = spread(outside, CALIBRATION_PHOTOS)
    calibration_crops = aligned_crops(engine, calibration)
    calibration_bgr = [decode_bgr(p.read_bytes()) for p in calibration]
    detector_calibration = [
        detector_blob(engine.detector, bgr, side)
        for bgr in calibration_bgr[:DETECTOR_CALIBRATION_PHOTOS]
        for side in (320, 640)
    ]
    timing_lfw = [decode_bgr(p.read_bytes()) for p in spread(used, TIMING_PHOTOS)]
    if faces_dir:
        with (faces_dir / "labels.tsv").open() as handle:
            rows = [r for r in csv.DictReader(handle, delimiter="\t") if r["kind"] in ("single", "group")]
        large = [
            decode((faces_dir / r["path"]).read_bytes(), min_long_side=engine.decode_long_side()).bgr
            for r in spread(rows, TIMING_PHOTOS)
        ]
    else:
        large = timing_lfw
    crops = aligned_crops(engine, spread(used, 4 * TIMING_PHOTOS))[:TIMING_PHOTOS]
    return {
        "calibration_photos": len(calibration),
        "detector_calibration": detector_calibration,
        "recognizer_calibration": [recognizer_blob(engine.recognizer, [crop]) for crop in calibration_crops],
        "cases": {
            "detector_640": ("detector", [detector_blob(engine.detector, bgr, 640) for bgr in large]),
            "detector_320": ("detector", [detector_blob(engine.detector, bgr, 320) for bgr in timing_lfw]),
            "recognizer_batch1": ("recognizer", [recognizer_blob(engine.recognizer, [crop]) for crop in crops]),
            "recognizer_batch8": ("recognizer", [recognizer_blob(engine.recognizer, crops)] * 2),
        },
        "per_item": {"detector_640": 1, "detector_320": 1, "recognizer_batch1": 1, "recognizer_batch8": len(crops)},
    }


def available_variants(requested: list[str] | None) -> tuple[list[Variant], list[str]]:
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    chosen = [v for v in VARIANTS if requested is None or v.name in requested or v.name == BASELINE]
    skipped = [v.name for v in chosen if v.provider not in available]
    if skipped:
        log(
            f"skipping {', '.join(skipped)}: {OPENVINO} is not available in this onnxruntime "
            f"({ort.__version__}, providers {sorted(available)}); run with the separate venv's python "
            "(PERFORMANCE.md, 'Inference backends on this CPU')"
        )
    return [v for v in chosen if v.provider in available], skipped


def main(argv: list[str] | None = None) -> int:
    import onnxruntime as ort

    parser = argparse.ArgumentParser(prog="python -m bench.backends", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw-dir", type=Path, help="LFW dev folder (default: LFW_DIR)")
    parser.add_argument("--faces-dir", type=Path, help="labelled real photos (default: FACES_DATASET_DIR)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where quantized models are built")
    parser.add_argument("--rounds", type=int, default=10, help="timing rounds (each input once per variant)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per session (the service's: 1)")
    parser.add_argument("--quality-threads", type=int, default=2, help="threads for the quality passes")
    parser.add_argument("--variants", help="comma-separated variant names (the baseline always runs)")
    parser.add_argument("--no-quality", action="store_true", help="speed only")
    parser.add_argument(
        "--write-pack",
        type=Path,
        metavar="DIR",
        help=f"only build the pack of {ADOPTED.name} (int8 detector, bundled recognizer) into DIR, for MODEL_PACK_DIR",
    )
    parser.add_argument(
        "--out", type=Path, help="results file (default: backends.json, backends_cpu.json without OpenVINO)"
    )
    args = parser.parse_args(argv)

    settings = load_settings()
    lfw_dir = args.lfw_dir or settings.lfw_dir
    faces_dir = args.faces_dir or settings.faces_dataset_dir
    if lfw_dir is None or not (lfw_dir / "pairs.txt").exists():
        parser.error(f"no LFW pairs.txt under {lfw_dir} (pass --lfw-dir or set LFW_DIR)")
    variants, skipped = available_variants(args.variants.split(",") if args.variants else None)
    out = args.out or RESULTS_DIR / (
        "backends.json" if OPENVINO in ort.get_available_providers() else "backends_cpu.json"
    )
    load_at_start = load_avg()
    log(f"load at start: {load_at_start['uptime']}")

    reference = FaceEngine(settings.model_copy(update={"ort_threads": args.quality_threads, "ort_providers": (CPU,)}))
    inputs = prepare_inputs(reference, lfw_dir, faces_dir)
    models = build_models(args.cache_dir, inputs["detector_calibration"], inputs["recognizer_calibration"])
    if args.write_pack:
        print(f"MODEL_PACK_DIR={write_pack(args.write_pack, models, ADOPTED)}")
        return 0
    sessions = {v.name: open_sessions(v, models, args.threads) for v in variants}
    started = time.perf_counter()
    samples = time_variants(sessions, inputs["cases"], args.rounds)
    speed = summarize_speed(samples, inputs["per_item"])
    timing_seconds = time.perf_counter() - started
    del sessions
    load_after_timing = load_avg()

    faster = [v for v in variants if v.name != BASELINE and best_speedup(v, speed) >= MIN_SPEEDUP]
    quality: dict = {}
    if not args.no_quality:
        checked = [v for v in variants if v.name == BASELINE] + faster
        engines = {
            v.name: engine_for(settings, v, pack_dir(args.cache_dir, models, v), args.quality_threads) for v in checked
        }
        log(f"quality checks for {', '.join(engines)}")
        quality["lfw"] = lfw_quality(engines, lfw_dir, settings)
        if faces_dir:
            quality["real_photos"] = real_photo_quality(engines, faces_dir, settings)
    document = {
        "what": __doc__.split("\n\n")[0],
        "onnxruntime": ort.__version__,
        "providers_available": ort.get_available_providers(),
        "threads_per_session": args.threads,
        "rounds": args.rounds,
        "variants": [dataclasses.asdict(v) for v in variants],
        "skipped_variants": skipped,
        "calibration_photos": inputs["calibration_photos"],
        "quantization": "activations uint8, weights int8 per channel with reduce_range; MinMax calibration",
        "min_speedup_for_quality_checks": MIN_SPEEDUP,
        "speed": speed,
        "timing_seconds": round(timing_seconds, 1),
        "quality": quality,
        "machine": machine_info(),
        "load": {"start": load_at_start, "after_timing": load_after_timing, "end": load_avg()},
        "model_files_note": "quantized files are built in the cache folder, never committed: non-commercial licence",
    }
    write_json(out, document)
    for case, rows in speed.items():
        log(case + ": " + ", ".join(f"{name} {row['median_ms']} ms x{row['speedup']}" for name, row in rows.items()))
    for name, row in quality.get("lfw", {}).items():
        log(f"lfw {name}: accuracy {row['accuracy_mean']:.4f} tar@1e-3 {row['tar_at_far_1e-3']:.4f}")
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
