"""Open-set (1:N) identification on LFW: FPIR and FNIR against the threshold, per gallery size.

    python -m bench.openset --lfw-dir DIR [--cache-dir DIR] [--out bench/results] [--no-synthetic]

A recognition searches a stranger's face against every enrolled face, so a fixed threshold
falsely identifies more strangers as the gallery grows. This measures the NIST FRVT 1:N rates:

- FPIR(N, t): the share of non-mated searches (the person is not enrolled) whose best-scoring
  enrolled person scores >= t: a stranger identified as someone.
- FNIR(N, t): the share of mated searches (the person is enrolled) whose own person is not the
  rank-1 result at >= t: missed, or outranked by someone else.

Data and pipeline: every LFW development photo (5,373 photos of 2,086 people) is embedded
once exactly as bench.lfw does (decode_bgr, FaceEngine.detect with the service's settings,
the face nearest the image centre, FaceEngine.embed); the embeddings are cached outside the
repository (--cache-dir, default /tmp/faceapi-bench-cache). Three LFW names that are the same
person (ALIASES) are merged; everything else keeps LFW's labels.

Split (seeded): the people are dealt into 10 folds. For each fold its people are the
strangers and the other ~1,875 people the gallery; pooled over the folds every person is a
stranger once. A person's photos are shuffled: the gallery holds up to 3 of them (always
leaving one as a probe when there are 2+), the rest (up to 5) are its mated probes; a
stranger's first 5 photos are its non-mated probes. Galleries of 100, 300 and 1,000 persons
are seeded subsets of each fold's gallery. Enrollment policies, compared on the same probes:

- one: one photo per person (the first of its enrolled photos);
- best3: up to 3 photos, the person scores its best face (the service's rule today);
- mean3: the same photos as one mean template (mean of the embeddings, re-normalised);
- best3+mean: both, the person scores the better of the two.

The per-comparison impostor tail p(t) comes from every pair of different people among the
strangers' photos (up to 5 per person: 7.0 M pairs; over all 14.4 M pairs the few people with
50 to 236 photos dominate, and their lower impostor scores made the predicted FPIR 30 to 60 %
too low); beyond t where fewer than MIN_TAIL_COUNT pairs remain it continues as an
exponential fitted over FIT_COUNTS (the measured log-tail bends down, so the straight line is
the cautious continuation). It is written, aggregate only, to domain/openset_tail.json, from
which domain.openset derives thresholds. With it, FPIR(N, t) = 1 - (1 - p(t))^N extends the
measurement to 10k, 100k and 1M persons, and FNIR(N, t) = 1 - mean over mated probes of
[s >= t] (1 - p(s))^(N - 1) estimates the mates that an impostor would outrank. Both are
checked against the measured galleries, and the FPIR against galleries of up to 1M distractor
faces sampled from bench.spectrum's model of real embeddings (bench/results/lfw_spectrum.json).

Also measured at the full gallery: a margin rule (best and second-best persons closer than m:
ambiguous, not an identification), score normalisation against the gallery as impostor cohort
(z-score of the best score among the probe's scores against all gallery persons), and
quality-aware scoring (a higher threshold for probes in the worst quality quartile).

Results: bench/results/openset.json, openset.csv, openset_det.png; domain/openset_tail.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import RESULTS_DIR, machine_info, write_csv, write_json
from domain.openset import TAIL_PATH, Tail, load_tail, threshold_for

log = logging.getLogger("bench.openset")

DEFAULT_CACHE = Path("/tmp/faceapi-bench-cache")
SEED = 18
FOLDS = 10
MAX_ENROLLED = 3
MAX_PROBES = 5
SUBSET_SIZES = (100, 300, 1000)  # and the whole gallery of each fold
EXTRAPOLATED_SIZES = (10_000, 100_000, 1_000_000)
TARGET_FPIR = 0.01
# Candidate MATCH_FPIR defaults and the floor: the service's threshold is threshold_for(faces, target, floor).
POLICY_TARGETS = (0.002, 0.005, 0.0075, 0.01, 0.02)
POLICY_FLOOR = 0.30
POLICIES = ("one", "best3", "mean3", "best3+mean")
# Same person under two LFW names (transliterations, a married name).
ALIASES = {
    "Dai_Chul_Chyung": "Chyung_Dai-chul",
    "Hassan_Wirajuda": "Hasan_Wirayuda",
    "Cristina_Kirchner": "Cristina_Fernandez",
}
# The grid of domain/openset_tail.json: the request threshold's range [0.10, 0.95].
TAIL_GRID = np.round(np.arange(0.100, 0.9501, 0.005), 3)
MIN_TAIL_COUNT = 30  # impostor pairs at or above a threshold for p(t) to count as measured
FIT_COUNTS = (30, 3000)  # the exponential is fitted where 30..3000 pairs remain
CURVE = np.round(np.arange(0.0, 1.0001, 0.001), 3)  # thresholds of the measured curves
TABLE_THRESHOLDS = (0.25, 0.30, 0.32, 0.34, 0.35, 0.36, 0.38, 0.40, 0.45, 0.50)
MARGINS = (0.0, 0.02, 0.05, 0.08, 0.10)
SYNTHETIC_PROBES = 2000
SYNTHETIC_CHUNK = 20_000


# ---------------------------------------------------------------------------------------------
# Embeddings


def embed_all(lfw_dir: Path, cache_dir: Path) -> dict:
    """Every LFW image embedded once by the service's engine; cached outside the repository."""
    from bench.lfw import fallback_face, nearest_centre
    from config import load_settings
    from domain.images import decode_bgr
    from workers.engine import FaceEngine

    names = sorted(str(p.relative_to(lfw_dir / "images")) for p in (lfw_dir / "images").glob("*/*.jpg"))
    if not names:
        raise SystemExit(f"no images under {lfw_dir / 'images'}")
    settings = load_settings()
    engine = FaceEngine(settings)
    key = hashlib.sha256(
        "\n".join(
            [engine.model_name, str(settings.det_size), str(settings.det_size_min), str(settings.det_thresh)] + names
        ).encode()  # fmt: skip
    ).hexdigest()[:16]
    path = cache_dir / f"lfw_openset_{engine.model_name}_{key}.npz"
    if path.exists():
        log.info("embeddings from the cache %s", path)
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    vectors = np.zeros((len(names), 512), dtype=np.float32)
    detected = np.zeros(len(names), dtype=bool)
    quality = np.zeros((len(names), 4), dtype=np.float32)  # det_score, face_size, sharpness, |yaw|
    started = time.perf_counter()
    for i, name in enumerate(names):
        bgr = decode_bgr((lfw_dir / "images" / name).read_bytes())
        faces = engine.detect(bgr)
        face = nearest_centre(faces, bgr.shape) if faces else fallback_face(bgr.shape)
        engine.embed(bgr, [face])
        vectors[i] = face.embedding
        detected[i] = bool(faces)
        q = face.quality
        quality[i] = (q["det_score"], q["face_size"], q["sharpness"], abs(q["yaw"]))
        if (i + 1) % 500 == 0:
            log.info("  %d/%d images, %.0f s", i + 1, len(names), time.perf_counter() - started)
    cache_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "names": np.array(names),
        "vectors": vectors,
        "detected": detected,
        "quality": quality,
        "model": np.array(engine.model_name),
        "seconds": np.array(time.perf_counter() - started),
    }
    np.savez(path, **result)
    log.info("embedded %d images in %.0f s -> %s", len(names), time.perf_counter() - started, path)
    return result


def identities(names: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Each image's person index (LFW folder name, ALIASES merged) and the person names."""
    folders = [ALIASES.get(str(n).split("/")[0], str(n).split("/")[0]) for n in names]
    people, person = np.unique(folders, return_inverse=True)
    return person, [str(p) for p in people]


# ---------------------------------------------------------------------------------------------
# The impostor tail


def impostor_scores(similarity: np.ndarray, person: np.ndarray, lowest: float) -> tuple[np.ndarray, int]:
    """Sorted impostor scores >= lowest over every pair of different people, and the pair count."""
    kept, total = [], 0
    for i in range(len(person) - 1):
        row = similarity[i, i + 1 :]
        other = person[i + 1 :] != person[i]
        total += int(other.sum())
        kept.append(row[other & (row >= lowest)])
    return np.sort(np.concatenate(kept)), total


def count_at_or_above(sorted_scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    return len(sorted_scores) - np.searchsorted(sorted_scores, thresholds.astype(np.float32), side="left")


def build_tail(tail_scores: np.ndarray, pairs: int, model: str, source: str) -> dict:
    """p(t) on TAIL_GRID: measured while MIN_TAIL_COUNT pairs remain, then a fitted exponential."""
    counts = count_at_or_above(tail_scores, TAIL_GRID)
    measured = counts / pairs
    fit_rows = (counts >= FIT_COUNTS[0]) & (counts <= FIT_COUNTS[1])
    slope, intercept = np.polyfit(TAIL_GRID[fit_rows], np.log10(measured[fit_rows]), 1)
    last = int(np.flatnonzero(counts >= MIN_TAIL_COUNT)[-1])  # the last measured grid point
    p = measured.copy()
    beyond = np.arange(len(TAIL_GRID)) > last
    # The line through the last measured point with the fitted slope: continuous, and decreasing.
    p[beyond] = measured[last] * 10.0 ** (slope * (TAIL_GRID[beyond] - TAIL_GRID[last]))
    p = np.minimum.accumulate(p)
    return {
        "model": model,
        "what": "per-comparison false-match rate p(t): the share of pairs of photos of different people "
        "with cosine similarity >= t",
        "source": source,
        "generated_by": "python -m bench.openset (make bench-openset)",
        "impostor_pairs": int(pairs),
        "measured_up_to": float(TAIL_GRID[last]),
        "fit": {
            "form": "log10 p(t) = log10 p(t0) + slope * (t - t0) for t > t0 (an exponential tail)",
            "t0": float(TAIL_GRID[last]),
            "slope": round(float(slope), 4),
            "intercept_of_regression": round(float(intercept), 4),
            "fitted_on": f"grid points with {FIT_COUNTS[0]} to {FIT_COUNTS[1]} impostor pairs at or above t "
            f"(t = {TAIL_GRID[fit_rows][0]:.3f} to {TAIL_GRID[fit_rows][-1]:.3f})",
        },
        "thresholds": [round(float(t), 3) for t in TAIL_GRID],
        "false_matches": [int(c) for c in counts],
        "p": [float(f"{v:.4g}") for v in p],
    }


def alternative_tails(sim: np.ndarray, person: np.ndarray, names: np.ndarray, lfw_dir: Path) -> list[dict]:
    """p(t) over other pair populations, for comparison with the calibration's."""
    thresholds = np.array([0.25, 0.30, 0.32, 0.34, 0.36, 0.38, 0.40])
    populations = [("all photos", np.arange(len(names)))]
    if (lfw_dir / "pairs.txt").exists():
        from bench.lfw import read_pairs

        in_pairs = {name for pair in read_pairs(lfw_dir / "pairs.txt")[0] for name in (pair.a, pair.b)}
        populations.append(("photos of pairs.txt (bench.lfw)", np.flatnonzero([n in in_pairs for n in names])))
    rows = []
    for label, rows_of in populations:
        scores, pairs = impostor_scores(sim[np.ix_(rows_of, rows_of)], person[rows_of], float(thresholds[0]))
        counts = count_at_or_above(scores, thresholds)
        keys = [f"{t:.2f}" for t in thresholds]
        rows.append(
            {
                "population": label,
                "photos": len(rows_of),
                "impostor_pairs": pairs,
                "p": {k: float(f"{c / pairs:.3g}") for k, c in zip(keys, counts, strict=True)},
                "pairs_at_or_above": {k: int(c) for k, c in zip(keys, counts, strict=True)},
            }
        )
    return rows


def tail_from(document: dict) -> Tail:
    return Tail(
        model=document["model"],
        thresholds=np.asarray(document["thresholds"], dtype=np.float64),
        log10_p=np.log10(np.asarray(document["p"], dtype=np.float64)),
        impostor_pairs=document["impostor_pairs"],
    )


def p_of(tail: Tail, scores: np.ndarray) -> np.ndarray:
    """Tail.p of many scores at once (the same interpolation)."""
    return 10.0 ** np.interp(scores, tail.thresholds, tail.log10_p)


def closed_form(p: np.ndarray | float, n: float) -> np.ndarray:
    return -np.expm1(n * np.log1p(-np.asarray(p, dtype=np.float64)))


# ---------------------------------------------------------------------------------------------
# Split and searches


@dataclass
class Split:
    fold_of: np.ndarray  # person -> fold
    enrolled: list[np.ndarray]  # person -> image indices held by the gallery (up to MAX_ENROLLED)
    mated: list[np.ndarray]  # person -> probe image indices when enrolled
    stranger: list[np.ndarray]  # person -> probe image indices when not enrolled


def make_split(person: np.ndarray, seed: int = SEED) -> Split:
    rng = np.random.default_rng(seed)
    n_persons = int(person.max()) + 1
    fold_of = rng.permutation(n_persons) % FOLDS
    enrolled, mated, stranger = [], [], []
    for p in range(n_persons):
        photos = rng.permutation(np.flatnonzero(person == p))
        keep = min(MAX_ENROLLED, max(1, len(photos) - 1))
        enrolled.append(photos[:keep])
        mated.append(photos[keep:][:MAX_PROBES])
        stranger.append(photos[:MAX_PROBES])
    return Split(fold_of, enrolled, mated, stranger)


def normalise(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True).clip(min=1e-12)


def person_scores(
    policy: str, probes: np.ndarray, gallery: np.ndarray, split: Split, vectors: np.ndarray, sim: np.ndarray
) -> tuple[np.ndarray, int]:
    """Probes x gallery persons similarity under an enrollment policy, and the gallery's face count."""
    if policy == "one":
        faces = np.array([split.enrolled[p][0] for p in gallery])
        return sim[np.ix_(probes, faces)], len(faces)
    groups = [split.enrolled[p] for p in gallery]
    faces = np.concatenate(groups)
    starts = np.concatenate(([0], np.cumsum([len(g) for g in groups])[:-1]))
    best = np.maximum.reduceat(sim[np.ix_(probes, faces)], starts, axis=1)
    if policy == "best3":
        return best, len(faces)
    templates = normalise(np.stack([vectors[g].mean(axis=0) for g in groups]))
    mean = vectors[probes] @ templates.T
    if policy == "mean3":
        return mean, len(gallery)
    multi = np.array([len(g) > 1 for g in groups])  # a one-photo person's template is its face
    return np.maximum(best, mean), len(faces) + int(multi.sum())


@dataclass
class Searches:
    """Pooled results of the searches of one policy and gallery size over the folds."""

    gallery_persons: list[int]
    gallery_faces: list[int]
    nm_top1: np.ndarray  # non-mated: best score
    nm_top2: np.ndarray  # non-mated: second-best person's score
    nm_z: np.ndarray  # non-mated: z-score of the best against the probe's scores over the gallery
    nm_probe: np.ndarray  # non-mated: the probe image
    m_mate: np.ndarray  # mated: the mate's score
    m_top1: np.ndarray  # mated: the best score
    m_top2: np.ndarray
    m_z: np.ndarray
    m_hit: np.ndarray  # mated: the mate is rank 1
    m_probe: np.ndarray


def top_two(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argpartition(-scores, 1, axis=1)[:, :2] if scores.shape[1] > 1 else np.zeros((len(scores), 1), int)
    rows = np.arange(len(scores))[:, None]
    pair = scores[rows, order]
    swap = pair[:, 0] < pair[:, -1]
    first = np.where(swap, order[:, -1], order[:, 0])
    top1 = scores[np.arange(len(scores)), first]
    top2 = np.where(swap, pair[:, 0], pair[:, -1]) if scores.shape[1] > 1 else np.full(len(scores), -1.0)
    return first, top1, top2


def zscore(scores: np.ndarray, top1: np.ndarray) -> np.ndarray:
    return (top1 - scores.mean(axis=1)) / scores.std(axis=1).clip(min=1e-6)


def run_searches(
    policy: str, size: int | None, split: Split, vectors: np.ndarray, sim: np.ndarray, seed: int = SEED
) -> Searches:
    rng = np.random.default_rng([seed, size or 0])
    parts: dict[str, list] = {k: [] for k in Searches.__dataclass_fields__}
    for fold in range(FOLDS):
        gallery = np.flatnonzero(split.fold_of != fold)
        if size is not None and size < len(gallery):
            gallery = np.sort(rng.choice(gallery, size=size, replace=False))
        strangers = np.flatnonzero(split.fold_of == fold)
        nm = np.concatenate([split.stranger[p] for p in strangers])
        mated_of = [(split.mated[p], i) for i, p in enumerate(gallery) if len(split.mated[p])]
        m = np.concatenate([probes for probes, _ in mated_of])
        mate = np.concatenate([np.full(len(probes), i) for probes, i in mated_of])
        scores, faces = person_scores(policy, np.concatenate([nm, m]), gallery, split, vectors, sim)
        first, top1, top2 = top_two(scores)
        z = zscore(scores, top1)
        k = len(nm)
        parts["gallery_persons"].append([len(gallery)])
        parts["gallery_faces"].append([faces])
        parts["nm_top1"].append(top1[:k])
        parts["nm_top2"].append(top2[:k])
        parts["nm_z"].append(z[:k])
        parts["nm_probe"].append(nm)
        parts["m_mate"].append(scores[np.arange(k, len(scores)), mate])
        parts["m_top1"].append(top1[k:])
        parts["m_top2"].append(top2[k:])
        parts["m_z"].append(z[k:])
        parts["m_hit"].append(first[k:] == mate)
        parts["m_probe"].append(m)
    return Searches(
        **{
            key: (sum(value, []) if key.startswith("gallery") else np.concatenate(value))
            for key, value in parts.items()
        }
    )


# ---------------------------------------------------------------------------------------------
# Rates


def rates(s: Searches, thresholds: np.ndarray, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """FPIR and FNIR at each threshold (rank 1; with a margin, closer calls are not identifications)."""
    t = thresholds[:, None]
    nm_ok = (s.nm_top1 - s.nm_top2 >= margin)[None, :]
    m_ok = (s.m_hit & (s.m_top1 - s.m_top2 >= margin))[None, :]
    fpir = np.mean((s.nm_top1[None, :] >= t) & nm_ok, axis=1)
    fnir = 1.0 - np.mean((s.m_mate[None, :] >= t) & m_ok, axis=1)
    return fpir, fnir


def at_target(thresholds: np.ndarray, fpir: np.ndarray, fnir: np.ndarray, target: float = TARGET_FPIR) -> dict:
    """The lowest threshold (of those given) with FPIR <= target, and its rates."""
    ok = np.flatnonzero(fpir <= target)
    if not len(ok):
        return {"threshold": None, "fpir": None, "fnir": None}
    i = int(ok[0])
    return {
        "threshold": round(float(thresholds[i]), 3),
        "fpir": round(float(fpir[i]), 4),
        "fnir": round(float(fnir[i]), 4),
    }


def fnir_estimate(mate_scores: np.ndarray, tail: Tail, n: int, threshold: float) -> float:
    """Mates below the threshold, or outranked by one of n - 1 impostors (each above the mate with p(mate))."""
    survive = 1.0 - closed_form(p_of(tail, mate_scores), max(0, n - 1))
    return float(1.0 - np.mean((mate_scores >= threshold) * survive))


def policy_report(name: str, size_label: str, s: Searches, tail: Tail) -> dict:
    fpir, fnir = rates(s, CURVE)
    faces = float(np.mean(s.gallery_faces))
    persons = float(np.mean(s.gallery_persons))
    table = []
    for t in TABLE_THRESHOLDS:
        i = int(np.searchsorted(CURVE, t - 1e-9))
        table.append(
            {
                "threshold": t,
                "fpir": round(float(fpir[i]), 4),
                "fnir": round(float(fnir[i]), 4),
                "fpir_closed_form_faces": round(float(closed_form(tail.p(t), faces)), 4),
            }
        )
    sweep = []
    for target in POLICY_TARGETS:
        derived = threshold_for(round(faces), target, POLICY_FLOOR, tail)
        i = int(np.searchsorted(CURVE, derived - 1e-9))
        sweep.append(
            {
                "match_fpir": target,
                "threshold": derived,
                "expected_fpir": round(float(closed_form(tail.p(derived), round(faces))), 4),
                "fpir": round(float(fpir[i]), 4),
                "fnir": round(float(fnir[i]), 4),
            }
        )
    return {
        "policy": name,
        "gallery": size_label,
        "gallery_persons": round(persons, 1),
        "gallery_faces": round(faces, 1),
        "non_mated_searches": len(s.nm_top1),
        "mated_searches": len(s.m_mate),
        "rank1_any_threshold": round(float(s.m_hit.mean()), 4),
        "table": table,
        "at_fpir_1pct_measured": at_target(CURVE, fpir, fnir),
        "derived_thresholds": {"floor": POLICY_FLOOR, "rows": sweep},
        "_fpir": fpir,
        "_fnir": fnir,
    }


def extrapolate(tail: Tail, mate_one: np.ndarray, mate_best3: np.ndarray, mate_one_same: np.ndarray) -> list[dict]:
    """FNIR at FPIR 1 % for larger galleries, from the tail (closed forms above)."""
    rows = []
    for n in EXTRAPOLATED_SIZES:
        for policy, scores, comparisons in (
            ("one", mate_one, n),
            ("one (persons with 4+ photos)", mate_one_same, n),
            ("best3 (3 faces each; persons with 4+ photos)", mate_best3, 3 * n),
        ):
            t = threshold_for(comparisons, TARGET_FPIR, 0.0, tail)
            rows.append(
                {
                    "persons": n,
                    "policy": policy,
                    "comparisons": comparisons,
                    "threshold_at_fpir_1pct": t,
                    "expected_fpir": round(float(closed_form(tail.p(t), comparisons)), 5),
                    "fnir_estimate": round(fnir_estimate(scores, tail, comparisons, t), 4),
                    "fnir_below_threshold_only": round(float(np.mean(scores < t)), 4),
                    "mated_probes": len(scores),
                }
            )
    return rows


# ---------------------------------------------------------------------------------------------
# Synthetic distractors from bench.spectrum's model


def synthetic_check(spectrum_path: Path, tail: Tail, seed: int = SEED) -> dict:
    """FPIR of synthetic strangers against up to 1M synthetic distractor persons, one face each.

    Checks the closed form (independent comparisons) on data whose second-order statistics are
    LFW's; the model is Gaussian, so its tail is lighter than the real one (compared below).
    """
    from bench.spectrum import sample

    model = json.loads(spectrum_path.read_text())["model"]
    rng = np.random.default_rng([seed, 1])
    probes, _, _ = sample(model, SYNTHETIC_PROBES, 1, rng)
    sizes = sorted({*SUBSET_SIZES, 2_000, *EXTRAPOLATED_SIZES})
    top1 = np.full(len(probes), -1.0, dtype=np.float32)
    counts = np.zeros(len(TAIL_GRID), dtype=np.int64)
    snapshots: dict[int, np.ndarray] = {}
    started = time.perf_counter()
    seen = 0
    for boundary in sorted({*sizes, *range(SYNTHETIC_CHUNK, sizes[-1] + 1, SYNTHETIC_CHUNK)}):
        faces, _, _ = sample(model, boundary - seen, 1, rng)  # new persons, one face each
        scores = probes @ faces.T
        np.maximum(top1, scores.max(axis=1), out=top1)
        high = scores[scores >= TAIL_GRID[0]]
        counts += np.bincount(np.searchsorted(TAIL_GRID, high, side="right"), minlength=len(TAIL_GRID) + 1)[1:]
        seen = boundary
        if seen in sizes:
            snapshots[seen] = top1.copy()
        if seen % 200_000 == 0:
            log.info("  synthetic distractors: %d, %.0f s", seen, time.perf_counter() - started)
    at_or_above = np.cumsum(counts[::-1])[::-1]
    pairs = len(probes) * sizes[-1]
    p_syn = at_or_above / pairs
    rows = []
    for n in sizes:
        curve_fpir = (snapshots[n][None, :] >= CURVE[:, None]).mean(axis=1)
        measured_t = at_target(CURVE, curve_fpir, np.zeros_like(curve_fpir))["threshold"]
        real_t = threshold_for(n, TARGET_FPIR, 0.0, tail)
        for t in (0.30, 0.35, 0.40, 0.45):
            i = int(np.searchsorted(TAIL_GRID, t - 1e-9))
            rows.append(
                {
                    "distractors": n,
                    "threshold": t,
                    "fpir_measured_synthetic": round(float(np.mean(snapshots[n] >= t)), 4),
                    "fpir_closed_form_synthetic_p": round(float(closed_form(p_syn[i], n)), 4),
                    "fpir_closed_form_real_tail": round(float(closed_form(tail.p(t), n)), 4),
                    "threshold_at_fpir_1pct_synthetic": measured_t,
                    "threshold_at_fpir_1pct_real_tail": real_t,
                }
            )
    return {
        "probes": len(probes),
        "distractors": sizes[-1],
        "pairs": int(pairs),
        "seconds": round(time.perf_counter() - started, 1),
        "p_synthetic_vs_real": [
            {
                "threshold": float(TAIL_GRID[i]),
                "p_synthetic": float(f"{p_syn[i]:.3g}"),
                "p_real_tail": float(f"{tail.p(float(TAIL_GRID[i])):.3g}"),
            }
            for i in range(len(TAIL_GRID))
            if round(TAIL_GRID[i] * 1000) % 25 == 0 and TAIL_GRID[i] <= 0.5
        ],
        "rows": rows,
    }


# ---------------------------------------------------------------------------------------------
# Better trade-offs at the full gallery


def margin_report(s: Searches) -> list[dict]:
    rows = []
    for m in MARGINS:
        fpir, fnir = rates(s, CURVE, m)
        rows.append({"margin": m, **at_target(CURVE, fpir, fnir)})
    return rows


def z_report(s: Searches) -> dict:
    """FNIR at FPIR 1 % thresholding the z-score of the best person instead of its cosine."""
    grid = np.linspace(0, 15, 1501)
    fpir = np.mean(s.nm_z[None, :] >= grid[:, None], axis=1)
    fnir = 1.0 - np.mean((s.m_z[None, :] >= grid[:, None]) & s.m_hit[None, :], axis=1)
    raw_fpir, raw_fnir = rates(s, CURVE)
    z = at_target(grid, fpir, fnir)
    return {"raw_cosine": at_target(CURVE, raw_fpir, raw_fnir), "z_score": z}


def quality_report(s: Searches, quality: np.ndarray) -> dict:
    """A probe quality score (the rank mean of det_score, face size, sharpness, -|yaw|), worst quartile."""
    ranks = np.argsort(np.argsort(quality * np.array([1, 1, 1, -1]), axis=0), axis=0).mean(axis=1)
    worst = ranks <= np.percentile(ranks, 25)
    nm_low, m_low = worst[s.nm_probe], worst[s.m_probe]
    out: dict = {"worst_quartile_share": {"non_mated": round(float(nm_low.mean()), 3),
                                          "mated": round(float(m_low.mean()), 3)}}  # fmt: skip
    base_fpir, base_fnir = rates(s, CURVE)
    base = at_target(CURVE, base_fpir, base_fnir)
    out["no_quality_rule"] = base
    t = base["threshold"]
    if t is not None:
        i = int(np.searchsorted(CURVE, t - 1e-9))
        for label, nm_mask, m_mask in (("worst_quartile", nm_low, m_low), ("other_probes", ~nm_low, ~m_low)):
            out[label] = {
                "fpir": round(float(np.mean(s.nm_top1[nm_mask] >= CURVE[i])), 4),
                "fnir": round(float(1 - np.mean((s.m_mate[m_mask] >= CURVE[i]) & s.m_hit[m_mask])), 4),
            }
    rules = []
    for delta in (0.02, 0.05, 0.10):
        nm_top1 = np.where(nm_low, s.nm_top1 - delta, s.nm_top1)  # a higher threshold for the worst quartile
        m_mate = np.where(m_low, s.m_mate - delta, s.m_mate)
        fpir = np.mean(nm_top1[None, :] >= CURVE[:, None], axis=1)
        fnir = 1.0 - np.mean((m_mate[None, :] >= CURVE[:, None]) & s.m_hit[None, :], axis=1)
        rules.append({"extra_threshold_worst_quartile": delta, **at_target(CURVE, fpir, fnir)})
    out["rules"] = rules
    return out


# ---------------------------------------------------------------------------------------------
# Output


def plot_det(reports: list[dict], extrapolated: dict[int, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, 6))
    colours = plt.get_cmap("tab10")
    sizes = list(dict.fromkeys(r["gallery"] for r in reports))
    for ax, policies in zip(axes, (("one",), ("one", "best3", "mean3", "best3+mean")), strict=True):
        for i, size in enumerate(sizes):
            for j, r in enumerate(r for r in reports if r["gallery"] == size and r["policy"] in policies):
                if len(policies) > 1 and size != sizes[-1]:
                    continue
                colour = colours(i) if len(policies) == 1 else colours(j)
                label = f"{r['gallery_persons']:.0f} persons" if len(policies) == 1 else r["policy"]
                keep = r["_fpir"] > 0
                ax.plot(r["_fpir"][keep], r["_fnir"][keep], lw=1.6, color=colour, label=f"{label} (measured)")
        if len(policies) == 1:
            for k, (n, (fpir, fnir)) in enumerate(sorted(extrapolated.items())):
                keep = (fpir > 1e-4) & (fpir < 1)
                ax.plot(fpir[keep], fnir[keep], "--", lw=1.3, color=colours(len(sizes) + k),
                        label=f"{n:,} persons (from the tail)")  # fmt: skip
        ax.axvline(TARGET_FPIR, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(1e-4, 1)
        ax.set_ylim(3e-3, 1)
        ax.set_xlabel("FPIR (strangers identified as someone)")
        ax.set_ylabel("FNIR (enrolled persons missed at rank 1)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    axes[0].set_title("one photo per person, by gallery size")
    persons = next(r["gallery_persons"] for r in reports if r["gallery"] == sizes[-1])
    axes[1].set_title(f"{persons:.0f}-person galleries: enrollment policies (same probes)")
    fig.suptitle("Open-set identification on LFW dev (w600k_mbf, service pipeline)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def extrapolated_curves(tail: Tail, mate_scores: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    thresholds = np.round(np.arange(0.20, 0.70, 0.005), 3)
    p_mate = p_of(tail, mate_scores)
    out = {}
    for n in EXTRAPOLATED_SIZES:
        fpir = np.array([closed_form(tail.p(float(t)), n) for t in thresholds])
        survive = 1.0 - closed_form(p_mate, n - 1)
        fnir = np.array([1.0 - np.mean((mate_scores >= t) * survive) for t in thresholds])
        out[n] = (fpir, fnir)
    return out


def csv_rows(reports: list[dict]) -> list[dict]:
    rows = []
    for r in reports:
        for row in r["table"]:
            rows.append(
                {
                    "policy": r["policy"],
                    "gallery": r["gallery"],
                    "gallery_persons": r["gallery_persons"],
                    "gallery_faces": r["gallery_faces"],
                    **row,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw-dir", type=Path, help="folder with images/ (default: LFW_DIR)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="embedding cache, outside the repo")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results folder (default bench/results)")
    parser.add_argument("--tail-out", type=Path, default=TAIL_PATH, help="the calibration file to (re)write")
    parser.add_argument("--spectrum", type=Path, default=RESULTS_DIR / "lfw_spectrum.json")
    parser.add_argument("--no-synthetic", action="store_true", help="skip the 1M synthetic distractors (~3 min)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from config import load_settings

    settings = load_settings()
    lfw_dir = args.lfw_dir or settings.lfw_dir
    if lfw_dir is None or not (lfw_dir / "images").is_dir():
        parser.error(f"no LFW images/ under {lfw_dir} (pass --lfw-dir or set LFW_DIR)")
    started = time.perf_counter()
    data = embed_all(lfw_dir, args.cache_dir)
    vectors, names, model = data["vectors"], data["names"], str(data["model"])
    person, people = identities(names)
    sim = vectors @ vectors.T

    # The tail: every pair of different people among up to MAX_PROBES photos per person (the
    # photos strangers are searched with), so that no much-photographed person outweighs the rest.
    split = make_split(person)
    population = np.sort(np.concatenate(split.stranger))
    tail_scores, pairs = impostor_scores(sim[np.ix_(population, population)], person[population], TAIL_GRID[0])
    source = (
        f"LFW development half ({len(names):,} photos of {len(people):,} people, {len(ALIASES)} LFW name aliases "
        f"merged), up to {MAX_PROBES} photos per person (seeded choice): {len(population):,} photos, "
        f"{pairs:,} pairs of photos of different people; embedded by the service's pipeline (bench.openset)"
    )
    tail_doc = build_tail(tail_scores, pairs, model, source)
    tail_doc["images"], tail_doc["people"] = len(population), len(people)
    args.tail_out.write_text(json.dumps(tail_doc, indent=1) + "\n")
    load_tail.cache_clear()
    tail = tail_from(tail_doc)
    log.info("tail: %d pairs, measured up to %.3f, slope %.2f", pairs, tail_doc["measured_up_to"],
             tail_doc["fit"]["slope"])  # fmt: skip
    alternatives = alternative_tails(sim, person, names, lfw_dir)
    top_impostors = np.flatnonzero(np.triu(sim >= 0.40, 1) & (person[:, None] != person[None, :]))
    highest = [
        {"a": str(names[i // len(names)]), "b": str(names[i % len(names)]), "score": round(float(sim.flat[i]), 4)}
        for i in top_impostors
    ]

    # Real galleries.
    reports, searches = [], {}
    for size in (*SUBSET_SIZES, None):
        label = str(size) if size else "all"
        for policy in POLICIES:
            s = run_searches(policy, size, split, vectors, sim)
            searches[(policy, label)] = s
            reports.append(policy_report(policy, label, s, tail))
            r = reports[-1]
            log.info("%s %s: persons %.0f faces %.0f, at FPIR 1%%: %s", policy, label, r["gallery_persons"],
                     r["gallery_faces"], r["at_fpir_1pct_measured"])  # fmt: skip

    # Mate scores for the extrapolation (each enrolled person's probes once).
    with_probes = [p for p in range(len(people)) if len(split.mated[p])]
    mate_one = np.concatenate([sim[split.mated[p], split.enrolled[p][0]] for p in with_probes])
    four = [p for p in with_probes if len(split.enrolled[p]) == MAX_ENROLLED]
    mate_one_same = np.concatenate([sim[split.mated[p], split.enrolled[p][0]] for p in four])
    mate_best3 = np.concatenate([sim[np.ix_(split.mated[p], split.enrolled[p])].max(axis=1) for p in four])
    extrapolated = extrapolate(tail, mate_one, mate_best3, mate_one_same)
    full_one = searches[("one", "all")]
    full_faces = round(float(np.mean(full_one.gallery_faces)))
    check = []
    for t in (0.30, 0.34, 0.36, 0.40):
        fpir, fnir = rates(full_one, np.array([t]))
        check.append({"threshold": t, "fnir_measured": round(float(fnir[0]), 4),
                      "fnir_estimate": round(fnir_estimate(mate_one, tail, full_faces, t), 4),
                      "fpir_measured": round(float(fpir[0]), 4),
                      "fpir_closed_form": round(float(closed_form(tail.p(t), full_faces)), 4)})  # fmt: skip

    synthetic = None if args.no_synthetic or not args.spectrum.exists() else synthetic_check(args.spectrum, tail)

    best3_full = searches[("best3", "all")]
    payload = {
        "benchmark": "bench.openset",
        "machine": machine_info(),
        "model": model,
        "data": {
            "images": len(names),
            "people": len(people),
            "undetected_images": int((~data["detected"]).sum()),
            "aliases_merged": ALIASES,
            "folds": FOLDS,
            "seed": SEED,
            "max_enrolled": MAX_ENROLLED,
            "max_probes_per_person": MAX_PROBES,
            "embedding_seconds": round(float(data["seconds"]), 1),
        },
        "tail": {k: tail_doc[k] for k in ("impostor_pairs", "measured_up_to", "fit")}
        | {
            "p_at": {f"{t:.2f}": float(f"{tail.p(t):.3g}") for t in (0.25, 0.30, 0.35, 0.40, 0.45, 0.50)},
            "impostor_pairs_at_or_above_0.40": highest,
            "other_populations": alternatives,
        },
        "target_fpir": TARGET_FPIR,
        "galleries": [{k: v for k, v in r.items() if not k.startswith("_")} for r in reports],
        "extrapolated": extrapolated,
        "estimate_check_full_gallery_one_photo": check,
        "margin_rule_full_gallery": {"one": margin_report(full_one), "best3": margin_report(best3_full)},
        "cohort_normalisation_full_gallery": {"one": z_report(full_one), "best3": z_report(best3_full)},
        "quality_aware_full_gallery_one": quality_report(full_one, data["quality"]),
        "synthetic_distractors": synthetic,
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "openset.json", payload)
    write_csv(args.out / "openset.csv", csv_rows(reports))
    try:
        plot_det(reports, extrapolated_curves(tail, mate_one), args.out / "openset_det.png")
    except ImportError:
        log.warning("matplotlib is not installed: no DET plot")
    for r in reports:
        target = r["at_fpir_1pct_measured"]
        print(f"openset policy={r['policy']} gallery={r['gallery']} persons={r['gallery_persons']:.0f} "
              f"threshold_at_fpir_1pct={target['threshold']} fnir={target['fnir']}")  # fmt: skip
    for row in extrapolated:
        print(f"openset extrapolated persons={row['persons']} policy={row['policy']!r} "
              f"threshold={row['threshold_at_fpir_1pct']} fnir_estimate={row['fnir_estimate']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
