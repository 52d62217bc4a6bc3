"""Second-order statistics of real face embeddings, for realistic synthetic data in bench.db.

    python -m bench.spectrum [--lfw-dir DIR]

HNSW's recall depends on how the stored vectors are spread: the same index finds far fewer
true neighbours in isotropic noise than in data with a low intrinsic dimension. bench.db's
default synthetic data (a random 64-dimensional subspace) is a guess; this fits the real thing.
It embeds every LFW development image with the worker's engine (the face nearest the centre,
detector at 320 as the service runs on 250 px photos), then fits a two-level Gaussian model:

  face = global mean + person offset ~ N(0, S_between) + photo deviation ~ N(0, S_within)

S_within is pooled over persons with 2+ photos; S_between is the covariance of the person
means corrected for their own photo noise. Only summary statistics are written, in the
eigenbasis of S_between (the basis is random-rotation-free: cosine similarity and HNSW do not
depend on it, so the eigenvectors are not stored): its eigenvalues, the variance of S_within
along each of them, and the mean's coordinates. No embedding and no image leaves the dataset.

bench.db --spectrum bench/results/lfw_spectrum.json samples its 1M faces from this model.
The file also records genuine/impostor cosine statistics of the real and of sampled data,
and effective dimensions, so the fit can be checked.

Results: bench/results/lfw_spectrum.json.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.common import RESULTS_DIR, machine_info, write_json

log = logging.getLogger("bench.spectrum")

DETECTOR_KEY = (320, 0.5)  # what the service's adaptive detector uses on a 250 px LFW photo
SAMPLE_PAIRS = 200_000


def effective_dimension(eigenvalues: np.ndarray) -> float:
    """Participation ratio (sum l)^2 / sum l^2: 512 for isotropic data, 1 for a single direction."""
    lam = np.clip(eigenvalues, 0, None)
    return float(lam.sum() ** 2 / (lam**2).sum())


def dimensions_for_variance(eigenvalues: np.ndarray, fraction: float) -> int:
    lam = np.sort(np.clip(eigenvalues, 0, None))[::-1]
    return int(np.searchsorted(np.cumsum(lam) / lam.sum(), fraction) + 1)


def fit(embeddings: np.ndarray, person: np.ndarray) -> dict:
    """The two-level Gaussian model in the eigenbasis of the between-person covariance."""
    persons, person_idx, counts = np.unique(person, return_inverse=True, return_counts=True)
    centres = np.zeros((len(persons), embeddings.shape[1]))
    np.add.at(centres, person_idx, embeddings)
    centres /= counts[:, None]
    residual = embeddings - centres[person_idx]
    multi = counts[person_idx] >= 2
    within = residual[multi].T @ residual[multi] / (multi.sum() - (counts >= 2).sum())
    mean = embeddings.mean(axis=0)
    offsets = centres - mean
    between = offsets.T @ offsets / (len(persons) - 1) - within * float(np.mean(1.0 / counts))
    eigenvalues, basis = np.linalg.eigh(between)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, basis = np.clip(eigenvalues[order], 0, None), basis[:, order]
    total = np.linalg.eigvalsh(np.cov(embeddings.T))
    return {
        "between_eigenvalues": eigenvalues.round(8).tolist(),
        "within_variance_along_between_axes": np.diag(basis.T @ within @ basis).round(8).tolist(),
        "mean_coordinates": (basis.T @ mean).round(8).tolist(),
        "effective_dimension": {
            "all_embeddings": round(effective_dimension(total), 1),
            "between_person": round(effective_dimension(eigenvalues), 1),
            "within_person": round(effective_dimension(np.linalg.eigvalsh(within)), 1),
        },
        "dimensions_for_90pct_variance": {
            "all_embeddings": dimensions_for_variance(total, 0.9),
            "between_person": dimensions_for_variance(eigenvalues, 0.9),
            "within_person": dimensions_for_variance(np.linalg.eigvalsh(within), 0.9),
        },
        "mean_norm": round(float(np.linalg.norm(mean)), 4),
    }


def sample(
    model: dict, n: int, faces_per_person: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n unit vectors from the fitted model, about `faces_per_person` per person; their person ids and centres."""
    between = np.sqrt(np.asarray(model["between_eigenvalues"], dtype=np.float32))
    within = np.sqrt(np.asarray(model["within_variance_along_between_axes"], dtype=np.float32))
    mean = np.asarray(model["mean_coordinates"], dtype=np.float32)
    n_persons = max(1, n // faces_per_person)
    centres = mean + rng.standard_normal((n_persons, len(between)), dtype=np.float32) * between
    person = rng.integers(0, n_persons, size=n)
    person[:n_persons] = np.arange(n_persons)[: min(n, n_persons)]  # every person has a face
    faces = np.empty((n, len(between)), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        faces[start:stop] = centres[person[start:stop]] + within_noise(model, stop - start, rng, within)
    faces /= np.linalg.norm(faces, axis=1, keepdims=True)
    return faces, person, centres


def within_noise(model: dict, rows: int, rng: np.random.Generator, scale: np.ndarray | None = None) -> np.ndarray:
    """A new photo's deviation from its person's centre."""
    if scale is None:
        scale = np.sqrt(np.asarray(model["within_variance_along_between_axes"], dtype=np.float32))
    return rng.standard_normal((rows, len(scale)), dtype=np.float32) * scale


def pair_statistics(embeddings: np.ndarray, person: np.ndarray, rng: np.random.Generator) -> dict:
    """Cosine of random same-person and different-person pairs."""
    by_person: dict[int, list[int]] = defaultdict(list)
    for index, p in enumerate(person.tolist()):
        by_person[p].append(index)
    multi = [rows for rows in by_person.values() if len(rows) >= 2]
    genuine = []
    for _ in range(min(SAMPLE_PAIRS, 20 * len(multi))):
        rows = multi[rng.integers(len(multi))]
        a, b = rng.choice(rows, size=2, replace=False)
        genuine.append(float(embeddings[a] @ embeddings[b]))
    a = rng.integers(0, len(embeddings), size=SAMPLE_PAIRS)
    b = rng.integers(0, len(embeddings), size=SAMPLE_PAIRS)
    keep = person[a] != person[b]
    impostor = np.einsum("ij,ij->i", embeddings[a[keep]], embeddings[b[keep]])

    def summary(values) -> dict:
        values = np.asarray(values)
        return {
            "mean": round(float(values.mean()), 4),
            "std": round(float(values.std()), 4),
            "p1": round(float(np.percentile(values, 1)), 4),
            "p99": round(float(np.percentile(values, 99)), 4),
        }

    return {"genuine_cosine": summary(genuine), "impostor_cosine": summary(impostor)}


def embed_lfw(lfw_dir: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from bench.lfw import run_detector
    from config import load_settings

    names = sorted(str(p.relative_to(lfw_dir / "images")) for p in (lfw_dir / "images").glob("*/*.jpg"))
    images = {name: (lfw_dir / "images" / name).read_bytes() for name in names}
    run = run_detector(load_settings(), DETECTOR_KEY, images, with_flip=False, log=log.info)
    detected = [name for name in names if run.detected[name]]
    people = sorted({name.split("/")[0] for name in detected})
    index = {p: i for i, p in enumerate(people)}
    embeddings = np.stack([run.plain[name] for name in detected]).astype(np.float64)
    person = np.array([index[name.split("/")[0]] for name in detected])
    return embeddings, person, [name for name in names if not run.detected[name]]


def main(argv: list[str] | None = None) -> int:
    from config import load_settings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw-dir", type=Path, help="folder with images/ (default: LFW_DIR)")
    parser.add_argument("--output", default="lfw_spectrum", help="file stem under bench/results/")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    lfw_dir = args.lfw_dir or load_settings().lfw_dir
    if lfw_dir is None or not (lfw_dir / "images").is_dir():
        parser.error(f"no LFW images/ under {lfw_dir} (pass --lfw-dir or set LFW_DIR)")

    started = time.perf_counter()
    embeddings, person, undetected = embed_lfw(lfw_dir)
    seconds = time.perf_counter() - started
    log.info("embedded %d images of %d people in %.0fs", len(embeddings), len(set(person)), seconds)
    model = fit(embeddings, person)
    rng = np.random.default_rng(0)
    synthetic, synthetic_person, _ = sample(model, 20_000, 5, rng)
    synthetic_total = np.linalg.eigvalsh(np.cov(synthetic.T.astype(np.float64)))
    payload = {
        "benchmark": "bench.spectrum",
        "machine": machine_info(),
        "source": f"LFW development half ({lfw_dir.name}): {len(embeddings)} detected images, "
        f"{len(set(person))} people, {int((np.bincount(person) >= 2).sum())} with 2+ photos",
        "undetected_images": len(undetected),
        "detector": {"det_size": DETECTOR_KEY[0], "det_thresh": DETECTOR_KEY[1], "face": "nearest the centre"},
        "real": pair_statistics(embeddings, person, rng),
        "sampled_20k": {
            **pair_statistics(synthetic, synthetic_person, rng),
            "effective_dimension": round(effective_dimension(synthetic_total), 1),
            "dimensions_for_90pct_variance": dimensions_for_variance(synthetic_total, 0.9),
        },
        "model": model,
    }
    write_json(RESULTS_DIR / f"{args.output}.json", payload)
    log.info("real: %s", payload["real"])
    log.info("sampled: %s", payload["sampled_20k"])
    log.info("model: %s %s", model["effective_dimension"], model["dimensions_for_90pct_variance"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
