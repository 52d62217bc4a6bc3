"""LFW verification benchmark of the worker's own face engine.

    python -m bench.lfw --lfw-dir DIR [--limit-pairs N] [--variant NAME ...] [--out bench/results]

Every image goes through the production path: ``domain.images.decode_bgr`` on the file's
bytes, ``workers.engine.FaceEngine.detect`` on the raw 250x250 photo, then
``FaceEngine.embed`` (5-point alignment, ArcFace, L2 normalisation) on the face nearest the
image centre (LFW photos often show other people; the labeled one is centred). Scores are
cosine similarities, the quantity the service compares with MATCH_THRESHOLD (``>=``).

Protocol: the standard LFW View 2 k-fold cross-validation from pairs.txt (its header gives
the number of folds). For each fold the threshold that maximises accuracy on the other folds
is applied to it; we report the mean and the (population) standard deviation of the fold
accuracies. Over all pairs we also report the ROC, TAR at FAR = 1e-3, and a table of
thresholds against the false-match rate (FMR) and false-non-match rate (FNMR).

Variants are named ``d<det_size>_t<det_thresh>[_flip][_nofb]`` (``default`` is the
configured DET_SIZE/DET_THRESH, no flip, with fallback); with no ``--variant`` the whole
2x2x2x2 grid runs (det_size 640/320, det_thresh 0.5/0.3, flip TTA off/on, fallback on/off).
Each variant detects at a fixed size; the service's default (DET_SIZE 640, DET_SIZE_MIN 320)
detects a 250 px LFW photo at 320, so on LFW it is the d320 variant.

- ``_flip``: horizontal-flip test-time augmentation: the engine's embedding of the aligned
  crop plus the embedding of the mirrored crop, averaged and re-normalised.
- fallback (on unless ``_nofb``): when the engine finds no face (its own border retry for
  small images included), the image is embedded anyway from a centre crop: the standard
  112x112 ArcFace landmark template mapped onto a square of half the image's shorter side,
  centred at (0.50, 0.47) of the image (a fit of the template to the median keypoints the
  detector finds on LFW). With ``_nofb`` a pair with an undetected image is a failed
  comparison with similarity -1 (always a non-match). Either way ``undetected`` counts them.

Each image is decoded, detected and embedded once per detector setting (det_size,
det_thresh); the variants sharing it reuse those embeddings from an in-memory cache, and
their speed is computed from the timed stages they use. Nothing is written but the results.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import re
import sys
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from config import Settings, load_settings
from domain.images import decode_bgr
from workers.engine import DetectedFace, FaceEngine

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "results"

# The standard ArcFace 112x112 landmark template (insightface.utils.face_align.arcface_dst).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)
# Centre-crop fallback: the template's 112x112 square as a fraction of the shorter side, and its centre.
FALLBACK_SIDE = 0.50
FALLBACK_CENTRE = (0.50, 0.47)

GRID_SIZES = (640, 320)
GRID_THRESHOLDS = (0.5, 0.3)
TARGET_FAR = 1e-3
WARMUP_IMAGES = 3
FIXED_THRESHOLDS = (0.25, 0.30)
ALL_PAIRS_FMRS = (1e-3, 1e-4, 1e-5, 1e-6)  # rows of the thresholds table besides the configured MATCH_THRESHOLD
TABLE_FMRS = (1e-2, 1e-3, 0.0)
VARIANT_RE = re.compile(r"^d(?P<size>\d+)_t(?P<thresh>\d*\.?\d+)(?P<flip>_flip)?(?P<nofb>_nofb)?$")


# ---------------------------------------------------------------------------------------------
# Variants and pairs


@dataclass(frozen=True)
class Variant:
    det_size: int
    det_thresh: float
    flip: bool = False
    fallback: bool = True

    @property
    def name(self) -> str:
        return (
            f"d{self.det_size}_t{self.det_thresh:g}"
            + ("_flip" if self.flip else "")
            + ("" if self.fallback else "_nofb")
        )

    @property
    def detector_key(self) -> tuple[int, float]:
        return (self.det_size, self.det_thresh)

    @classmethod
    def parse(cls, name: str, settings: Settings) -> Variant:
        if name == "default":
            return cls(settings.det_size, settings.det_thresh)
        match = VARIANT_RE.match(name)
        if not match:
            raise ValueError(f"bad variant {name!r}: expected default or d<size>_t<thresh>[_flip][_nofb]")
        return cls(int(match["size"]), float(match["thresh"]), bool(match["flip"]), not match["nofb"])


def grid() -> list[Variant]:
    return [
        Variant(size, thresh, flip, fallback)
        for size in GRID_SIZES
        for thresh in GRID_THRESHOLDS
        for flip in (False, True)
        for fallback in (True, False)
    ]


@dataclass(frozen=True)
class Pair:
    fold: int
    same: bool
    a: str  # image path relative to images/
    b: str


def image_path(name: str, number: str) -> str:
    return f"{name}/{name}_{int(number):04d}.jpg"


def read_pairs(path: Path, limit: int | None = None) -> tuple[list[Pair], int]:
    """The pairs of pairs.txt with their folds; `limit` keeps a balanced slice of every fold."""
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    folds, per_fold = int(lines[0][0]), int(lines[0][1])
    keep = per_fold if not limit else max(1, min(per_fold, limit // (2 * folds)))
    pairs: list[Pair] = []
    rows = iter(lines[1:])
    for fold in range(folds):
        for same in (True, False):
            for index in range(per_fold):
                row = next(rows)
                if same:
                    pair = Pair(fold, True, image_path(row[0], row[1]), image_path(row[0], row[2]))
                else:
                    pair = Pair(fold, False, image_path(row[0], row[1]), image_path(row[2], row[3]))
                if index < keep:
                    pairs.append(pair)
    return pairs, folds


# ---------------------------------------------------------------------------------------------
# Embedding through the engine


def nearest_centre(faces: list[DetectedFace], shape: tuple[int, ...]) -> DetectedFace:
    cy, cx = shape[0] / 2.0, shape[1] / 2.0

    def distance(face: DetectedFace) -> float:
        x1, y1, x2, y2 = face.bbox
        return math.hypot((x1 + x2) / 2.0 - cx, (y1 + y2) / 2.0 - cy)

    return min(faces, key=distance)


def fallback_face(shape: tuple[int, ...]) -> DetectedFace:
    """A pseudo-detection: the ArcFace template on a centred square, for the engine to align."""
    height, width = shape[:2]
    side = FALLBACK_SIDE * min(height, width)
    scale = side / 112.0
    origin = np.array([FALLBACK_CENTRE[0] * width - side / 2.0, FALLBACK_CENTRE[1] * height - side / 2.0])
    kps = (ARCFACE_TEMPLATE * scale + origin).astype(np.float32)
    bbox = [float(origin[0]), float(origin[1]), float(origin[0] + side), float(origin[1] + side)]
    return DetectedFace(bbox=bbox, det_score=0.0, kps=kps)


def mirrored_embeddings(engine: FaceEngine, bgr: np.ndarray, faces: list[DetectedFace]) -> np.ndarray:
    """L2-normalised embeddings of the horizontally mirrored aligned crops (same alignment as embed())."""
    from insightface.utils import face_align

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        crops = [np.ascontiguousarray(face_align.norm_crop(bgr, landmark=face.kps)[:, ::-1]) for face in faces]
    vectors = engine.recognizer.get_feat(crops).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)


def flip_tta(plain: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """Mean of the (normalised) embeddings of a crop and its mirror, re-normalised."""
    mean = plain + mirrored
    return mean / np.linalg.norm(mean, axis=-1, keepdims=True).clip(min=1e-12)


@dataclass
class DetectorPass:
    """Embeddings of every image under one detector setting, with stage timings."""

    key: tuple[int, float]
    plain: dict[str, np.ndarray] = field(default_factory=dict)
    mirrored: dict[str, np.ndarray] = field(default_factory=dict)
    detected: dict[str, bool] = field(default_factory=dict)
    faces_found: dict[str, int] = field(default_factory=dict)
    not_largest: int = 0  # images where the centred face is not the largest one
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("decode", "detect", "embed", "flip"), 0))
    threads: int = 0
    model: str = ""


def run_detector(
    settings: Settings, key: tuple[int, float], images: dict[str, bytes], with_flip: bool, log=None
) -> DetectorPass:
    det_size, det_thresh = key
    # A fixed detector size per variant (DET_SIZE_MIN = DET_SIZE). The service's default adapts the
    # size to the photo: on 250 px LFW photos that is exactly the d320 variant.
    fixed = settings.model_copy(update={"det_size": det_size, "det_size_min": det_size, "det_thresh": det_thresh})
    engine = FaceEngine(fixed)
    result = DetectorPass(key, threads=settings.ort_intra_threads(), model=engine.model_name)
    for data in list(images.values())[:WARMUP_IMAGES]:  # first runs of a session are slow: untimed
        bgr = decode_bgr(data)
        engine.analyze(bgr)
        mirrored_embeddings(engine, bgr, [fallback_face(bgr.shape)])
    clock = time.perf_counter
    for count, (name, data) in enumerate(images.items(), 1):
        t0 = clock()
        bgr = decode_bgr(data)
        t1 = clock()
        faces = engine.detect(bgr)
        t2 = clock()
        face = nearest_centre(faces, bgr.shape) if faces else fallback_face(bgr.shape)
        engine.embed(bgr, [face])
        t3 = clock()
        if with_flip:
            result.mirrored[name] = mirrored_embeddings(engine, bgr, [face])[0]
        t4 = clock()
        for stage, seconds in zip(
            ("decode", "detect", "embed", "flip"), (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True
        ):
            result.seconds[stage] += seconds
        result.plain[name] = face.embedding
        result.detected[name] = bool(faces)
        result.faces_found[name] = len(faces)
        result.not_largest += bool(faces) and face is not faces[0]
        if log and count % 500 == 0:
            log(f"  d{det_size}_t{det_thresh:g}: {count}/{len(images)} images")
    return result


def pair_scores(variant: Variant, run: DetectorPass, pairs: list[Pair]) -> np.ndarray:
    def vector(name: str) -> np.ndarray:
        plain = run.plain[name]
        return flip_tta(plain, run.mirrored[name]) if variant.flip else plain

    scores = np.empty(len(pairs), dtype=np.float64)
    for i, pair in enumerate(pairs):
        if not variant.fallback and not (run.detected[pair.a] and run.detected[pair.b]):
            scores[i] = -1.0  # a failed comparison: never a match
        else:
            scores[i] = float(np.dot(vector(pair.a), vector(pair.b)))
    return scores


# ---------------------------------------------------------------------------------------------
# Metrics


def accuracy_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    return float(np.mean((scores >= threshold) == labels))


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The accuracy-maximising threshold (middle of the tied optima) and its accuracy."""
    values = np.unique(scores)
    candidates = np.concatenate(([values[0] - 1e-6], (values[:-1] + values[1:]) / 2.0, [values[-1] + 1e-6]))
    pos, neg = np.sort(scores[labels]), np.sort(scores[~labels])
    true_accepts = len(pos) - np.searchsorted(pos, candidates, side="left")
    true_rejects = np.searchsorted(neg, candidates, side="left")
    accuracy = (true_accepts + true_rejects) / len(scores)
    best = np.flatnonzero(accuracy == accuracy.max())
    index = best[len(best) // 2]
    return float(candidates[index]), float(accuracy[index])


def kfold(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> list[dict]:
    results = []
    for fold in np.unique(folds):
        test = folds == fold
        threshold, train_accuracy = best_threshold(scores[~test], labels[~test])
        results.append(
            {
                "fold": int(fold) + 1,
                "pairs": int(test.sum()),
                "threshold": round(threshold, 6),
                "train_accuracy": round(train_accuracy, 6),
                "accuracy": round(accuracy_at(scores[test], labels[test], threshold), 6),
            }
        )
    return results


def threshold_at_fmr(neg: np.ndarray, fmr: float) -> float:
    """The smallest 4-decimal threshold with at most floor(fmr * n) negatives at or above it."""
    allowed = math.floor(fmr * len(neg) + 1e-9)
    ranked = np.sort(neg)[::-1]
    if allowed >= len(ranked):
        return -1.0
    return math.floor(ranked[allowed] * 1e4) / 1e4 + 1e-4


def operating_point(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    pos, neg = scores[labels], scores[~labels]
    return {
        "threshold": round(threshold, 4),
        "fmr": float(np.mean(neg >= threshold)),
        "false_matches": int(np.sum(neg >= threshold)),
        "fnmr": float(np.mean(pos < threshold)),
        "false_non_matches": int(np.sum(pos < threshold)),
        "accuracy": accuracy_at(scores, labels, threshold),
    }


def roc_points(scores: np.ndarray, labels: np.ndarray) -> list[dict]:
    from sklearn.metrics import roc_curve

    far, tar, thresholds = roc_curve(labels, scores, drop_intermediate=True)
    return [
        {"far": round(float(f), 6), "tar": round(float(t), 6), "threshold": round(float(h), 6)}
        for f, t, h in zip(far, tar, thresholds, strict=True)
        if np.isfinite(h)
    ]


def thresholds_table(scores: np.ndarray, labels: np.ndarray, fold_thresholds: list[float], current: float) -> list:
    neg = scores[~labels]
    rows = []
    for fmr in TABLE_FMRS:
        label = f"FMR<={fmr:g}" if fmr else f"FMR=0 (<1/{len(neg)})"
        rows.append({"row": label, **operating_point(scores, labels, threshold_at_fmr(neg, fmr))})
    optimal, _ = best_threshold(scores, labels)
    rows.append({"row": "accuracy-optimal (all pairs)", **operating_point(scores, labels, optimal)})
    rows.append(
        {"row": "accuracy-optimal (mean of folds)", **operating_point(scores, labels, float(np.mean(fold_thresholds)))}
    )
    for fixed in sorted({*FIXED_THRESHOLDS, current}):
        label = f"current MATCH_THRESHOLD ({current:g})" if fixed == current else f"fixed {fixed:g}"
        rows.append({"row": label, **operating_point(scores, labels, fixed)})
    return rows


def all_pairs_calibration(variant: Variant, run: DetectorPass, pairs: list[Pair], current: float) -> dict:
    """Thresholds against FMR on every cross-identity pair of the run's images (millions, not 1,500).

    LFW's 1,500 negatives cannot measure a FMR below 1/1500; comparing every image with every
    image of another person can, as far as ~1e-6 (the pairs share images, so they are correlated,
    and LFW names are the only identity labels). FNMR is given on the View 2 positives and on
    every same-person pair of the images.
    """
    names = sorted(n for n in run.plain if variant.fallback or run.detected[n])
    plain = np.stack([run.plain[n] for n in names])
    vectors = flip_tta(plain, np.stack([run.mirrored[n] for n in names])) if variant.flip else plain
    similarity = vectors @ vectors.T
    identities = np.unique([n.split("/")[0] for n in names], return_inverse=True)[1]
    upper = np.triu(np.ones(similarity.shape, dtype=bool), k=1)
    same = identities[:, None] == identities[None, :]
    impostor, genuine = similarity[upper & ~same], similarity[upper & same]
    del similarity, upper, same
    positives = pair_scores(variant, run, [p for p in pairs if p.same])

    def row(label: str, threshold: float) -> dict:
        return {
            "row": label,
            "threshold": round(threshold, 4),
            "fmr": float(np.mean(impostor >= threshold)),
            "false_matches": int(np.sum(impostor >= threshold)),
            "fnmr_view2_positives": float(np.mean(positives < threshold)),
            "fnmr_all_genuine": float(np.mean(genuine < threshold)),
        }

    rows = [row(f"FMR<={fmr:g}", threshold_at_fmr(impostor, fmr)) for fmr in ALL_PAIRS_FMRS]
    for fixed in sorted({*FIXED_THRESHOLDS, current}):
        rows.append(row(f"current MATCH_THRESHOLD ({current:g})" if fixed == current else f"fixed {fixed:g}", fixed))
    return {
        "images": len(names),
        "impostor_pairs": int(impostor.size),
        "genuine_pairs": int(genuine.size),
        "impostor_max": round(float(impostor.max()), 4),
        "impostor_mean": round(float(impostor.mean()), 4),
        "impostor_std": round(float(impostor.std()), 4),
        "rows": rows,
    }


def hard_pairs(scores: np.ndarray, labels: np.ndarray, pairs: list[Pair], count: int = 10) -> dict:
    """Errors at the accuracy-optimal threshold and the closest calls (image names only)."""

    def describe(indices: Iterable[int]) -> list[dict]:
        return [{"a": pairs[i].a, "b": pairs[i].b, "fold": pairs[i].fold + 1, "score": round(float(scores[i]), 4)}
                for i in indices]  # fmt: skip

    threshold, _ = best_threshold(scores, labels)
    pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
    return {
        "threshold": round(threshold, 4),
        "false_non_matches": describe(pos[np.argsort(scores[pos])][: int(np.sum(scores[pos] < threshold))]),
        "false_matches": describe(neg[np.argsort(-scores[neg])][: int(np.sum(scores[neg] >= threshold))]),
        "lowest_positives": describe(pos[np.argsort(scores[pos])][:count]),
        "highest_negatives": describe(neg[np.argsort(-scores[neg])][:count]),
    }


def evaluate(variant: Variant, run: DetectorPass, pairs: list[Pair], settings: Settings, n_images: int) -> dict:
    scores = pair_scores(variant, run, pairs)
    labels = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    per_fold = kfold(scores, labels, folds)
    accuracies = np.array([f["accuracy"] for f in per_fold])
    neg = scores[~labels]
    threshold = threshold_at_fmr(neg, TARGET_FAR)
    undetected = sorted(name for name, found in run.detected.items() if not found)
    stages = ["decode", "detect", "embed"] + (["flip"] if variant.flip else [])
    seconds = sum(run.seconds[s] for s in stages)
    from sklearn.metrics import roc_auc_score

    return {
        "variant": variant.name,
        "settings": {
            "det_size": variant.det_size,
            "det_thresh": variant.det_thresh,
            "flip_tta": variant.flip,
            "undetected_fallback": "centre_crop" if variant.fallback else "failed_comparison(-1)",
            "fallback_geometry": {"side_of_shorter_side": FALLBACK_SIDE, "centre": list(FALLBACK_CENTRE)},
            "face_choice": "nearest the image centre",
            "model": run.model,
            "ort_intra_threads": run.threads,
            "ort_providers": list(settings.ort_providers),
        },
        "pairs": len(pairs),
        "positives": int(labels.sum()),
        "negatives": int((~labels).sum()),
        "images": n_images,
        "accuracy_mean": float(accuracies.mean()),
        "accuracy_std": float(accuracies.std()),
        "folds": per_fold,
        "auc": float(roc_auc_score(labels, scores)),
        "tar_at_far_1e-3": float(np.mean(scores[labels] >= threshold)),
        "far_at_threshold": float(np.mean(neg >= threshold)),
        "threshold_at_far_1e-3": threshold,
        "thresholds": thresholds_table(scores, labels, [f["threshold"] for f in per_fold], settings.match_threshold),
        "roc": roc_points(scores, labels),
        "hard_pairs": hard_pairs(scores, labels, pairs),
        "all_pairs_calibration": all_pairs_calibration(variant, run, pairs, settings.match_threshold),
        "undetected": len(undetected),
        "undetected_images": undetected,
        "failed_comparisons": int(np.sum(scores == -1.0)) if not variant.fallback else 0,
        "multi_face_images": int(sum(n > 1 for n in run.faces_found.values())),
        "centred_face_not_largest": run.not_largest,
        "timing": {
            "stages_s": {s: round(run.seconds[s], 3) for s in stages},
            "seconds": round(seconds, 3),
            "images_per_s": round(n_images / seconds, 2) if seconds else None,
        },
        "_scores": scores,
        "_labels": labels,
    }


# ---------------------------------------------------------------------------------------------
# Output


def summary_line(result: dict) -> str:
    return (
        f"lfw accuracy={result['accuracy_mean']:.4f} std={result['accuracy_std']:.4f} "
        f"tar_at_far_1e-3={result['tar_at_far_1e-3']:.4f} threshold={result['threshold_at_far_1e-3']:.4f} "
        f"pairs={result['pairs']} undetected={result['undetected']}"
    )


def rank_key(result: dict) -> tuple:
    """Best first: accuracy, then TAR at FAR 1e-3, then fewer undetected, then speed."""
    return (
        -round(result["accuracy_mean"], 6),
        -result["tar_at_far_1e-3"],
        result["undetected"],
        -(result["timing"]["images_per_s"] or 0),
    )


def plot_roc(results: list[dict], best: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(9, 6.5))
    colours = plt.get_cmap("tab20")
    by_name = {r["variant"]: r for r in results}
    for i, result in enumerate(results):
        twin = by_name.get(result["variant"].removesuffix("_nofb"))
        if twin is not result and twin is not None and np.array_equal(twin["_scores"], result["_scores"]):
            continue  # nothing went undetected: the curve is its fallback twin's
        far, tar, _ = roc_curve(result["_labels"], result["_scores"])
        lowest = 1.0 / max(1, result["negatives"])
        style = "-" if result["settings"]["undetected_fallback"] == "centre_crop" else ":"
        width = 2.4 if result["variant"] == best else 1.1
        ax.plot(
            np.clip(far, lowest / 2, 1),
            tar,
            style,
            lw=width,
            color=colours(i % 20),
            label=f"{result['variant']} (acc {result['accuracy_mean']:.4f})",
        )
    ax.axvline(TARGET_FAR, color="grey", lw=0.8, ls="--")
    ax.text(0.01, 0.01, "dotted: no fallback (only where it differs)", transform=ax.transAxes, fontsize=7)
    ax.set_xscale("log")
    ax.set_xlim(left=1.0 / max(1, results[0]["negatives"]) / 2, right=1.0)
    lowest_tar = min(r["tar_at_far_1e-3"] for r in results)
    ax.set_ylim(max(0.0, math.floor((lowest_tar - 0.004) * 100) / 100), 1.0005)
    ax.set_xlabel("false accept rate (log)")
    ax.set_ylabel("true accept rate")
    ax.set_title(f"LFW dev ({results[0]['pairs']} pairs): worker engine, {results[0]['settings']['model']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(results: list[dict], best: str, out: Path, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for result in results:
        public = {k: v for k, v in result.items() if not k.startswith("_")}
        public["run"] = meta
        public["best_variant_of_run"] = best
        (out / f"lfw_{result['variant']}.json").write_text(json.dumps(public, indent=1) + "\n")
    with (out / "lfw_variants.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["variant", "det_size", "det_thresh", "flip_tta", "fallback", "accuracy", "std", "auc",
             "tar_at_far_1e-3", "threshold_at_far_1e-3", "undetected", "images_per_s"]
        )  # fmt: skip
        for r in results:
            s = r["settings"]
            writer.writerow(
                [r["variant"], s["det_size"], s["det_thresh"], s["flip_tta"], s["undetected_fallback"],
                 f"{r['accuracy_mean']:.4f}", f"{r['accuracy_std']:.4f}", f"{r['auc']:.5f}",
                 f"{r['tar_at_far_1e-3']:.4f}", f"{r['threshold_at_far_1e-3']:.4f}", r["undetected"],
                 r["timing"]["images_per_s"]]
            )  # fmt: skip
    with (out / "lfw_thresholds.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["variant", "row", "threshold", "fmr", "false_matches", "fnmr", "false_non_matches", "accuracy"]
        )
        for r in results:
            for row in r["thresholds"]:
                writer.writerow(
                    [r["variant"], row["row"], f"{row['threshold']:.4f}", f"{row['fmr']:.5f}", row["false_matches"],
                     f"{row['fnmr']:.5f}", row["false_non_matches"], f"{row['accuracy']:.4f}"]
                )  # fmt: skip
    with (out / "lfw_thresholds_all_pairs.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["variant", "row", "threshold", "fmr", "false_matches", "impostor_pairs",
                         "fnmr_view2_positives", "fnmr_all_genuine"])  # fmt: skip
        for r in results:
            calibration = r["all_pairs_calibration"]
            for row in calibration["rows"]:
                writer.writerow(
                    [r["variant"], row["row"], f"{row['threshold']:.4f}", f"{row['fmr']:.2e}", row["false_matches"],
                     calibration["impostor_pairs"], f"{row['fnmr_view2_positives']:.5f}",
                     f"{row['fnmr_all_genuine']:.5f}"]
                )  # fmt: skip
    plot_roc(results, best, out / "lfw_roc.png")


def load_images(root: Path, names: Iterable[str]) -> dict[str, bytes]:
    images = {}
    for name in sorted(set(names)):
        path = root / "images" / name
        if not path.exists():
            raise SystemExit(f"missing image {path}")
        images[name] = path.read_bytes()
    return images


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lfw", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw-dir", type=Path, help="folder with pairs.txt and images/ (default: LFW_DIR)")
    parser.add_argument("--limit-pairs", type=int, default=None, help="a balanced slice of about N pairs")
    parser.add_argument(
        "--variant", action="extend", nargs="+", default=None, help="default | d<size>_t<thresh>[_flip][_nofb]"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (default bench/results)")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    settings = load_settings()
    lfw_dir = args.lfw_dir or settings.lfw_dir
    if lfw_dir is None or not (lfw_dir / "pairs.txt").exists():
        parser.error(f"no LFW pairs.txt under {lfw_dir} (pass --lfw-dir or set LFW_DIR)")
    variants = [Variant.parse(name, settings) for name in args.variant] if args.variant else grid()
    variants = list(dict.fromkeys(variants))

    pairs, n_folds = read_pairs(lfw_dir / "pairs.txt", args.limit_pairs)
    images = load_images(lfw_dir, [name for pair in pairs for name in (pair.a, pair.b)])
    log(f"{len(pairs)} pairs in {n_folds} folds, {len(images)} images, {len(variants)} variants")

    results = []
    for key in dict.fromkeys(v.detector_key for v in variants):
        members = [v for v in variants if v.detector_key == key]
        started = time.perf_counter()
        run = run_detector(settings, key, images, any(v.flip for v in members), log)
        log(f"detector d{key[0]}_t{key[1]:g}: {time.perf_counter() - started:.1f}s")
        for variant in members:
            result = evaluate(variant, run, pairs, settings, len(images))
            results.append(result)
            print(f"variant={variant.name} {summary_line(result)} images_per_s={result['timing']['images_per_s']}")
        del run

    best = min(results, key=rank_key)
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "lfw_pairs_file": f"pairs.txt (folds 1-{n_folds} of LFW View 2)",
        "limit_pairs": args.limit_pairs,
        "folds": n_folds,
        "machine": {
            "cpu_count": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "note": "shared machine; timings are indicative",
        },
    }
    write_results(results, best["variant"], args.out, meta)
    print(f"best variant: {best['variant']} (results in {args.out})")
    print(summary_line(best))
    return 0


if __name__ == "__main__":
    sys.exit(main())
