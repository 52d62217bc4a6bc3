"""Grouping unknown faces into recurring strangers, measured on LFW, to choose UNKNOWNS_GROUP_THRESHOLD.

    python -m bench.unknowns [--lfw-dir DIR] [--seeds 3] [--max-photos 8]

LFW identities with two or more photos play recurring visitors (at most --max-photos each, so a
few very photographed people do not dominate), identities with a single photo play passers-by.
Their photos arrive in a random order (per seed) and are grouped exactly as the service groups
them (domain/unknown_grouping.py): online as they arrive, then after the periodic re-grouping.

For each threshold: BCubed precision (purity) and recall (completeness); how often a recurring
visitor is split over two or more groups; how often a group holds two or more identities. The
chosen default is the lowest threshold whose purity stays >= 0.98 both online and after
re-grouping (a lower threshold groups more completely). Embeddings come from bench.openset's
cache (the service's engine, each image's face nearest the centre).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from bench.common import RESULTS_DIR, machine_info, write_json
from bench.openset import DEFAULT_CACHE, embed_all, identities
from domain.unknown_grouping import Grouping, bcubed, regroup

log = logging.getLogger("bench.unknowns")
THRESHOLDS = np.round(np.arange(0.30, 0.701, 0.025), 3)
PURITY_TARGET = 0.98


def scenario(person: np.ndarray, detected: np.ndarray, max_photos: int, seed: int) -> np.ndarray:
    """Indices of the photos in arrival order: every detected photo of every identity, the
    recurring ones capped at max_photos (a random choice of them), shuffled."""
    rng = np.random.default_rng(seed)
    chosen = []
    for identity in np.unique(person):
        photos = np.flatnonzero((person == identity) & detected)
        if len(photos) > max_photos:
            photos = rng.choice(photos, max_photos, replace=False)
        chosen.extend(photos.tolist())
    order = np.array(chosen)
    rng.shuffle(order)
    return order


def measure(labels: np.ndarray, truth: np.ndarray) -> dict:
    precision, recall = bcubed(labels, truth)
    recurring = [i for i in np.unique(truth) if np.count_nonzero(truth == i) > 1]
    split = sum(len(np.unique(labels[truth == i])) > 1 for i in recurring)
    groups = [g for g in np.unique(labels) if np.count_nonzero(labels == g) > 1]
    mixed = sum(len(np.unique(truth[labels == g])) > 1 for g in groups)
    return {
        "bcubed_precision": round(precision, 4),
        "bcubed_recall": round(recall, 4),
        "recurring_split_rate": round(split / max(1, len(recurring)), 4),
        "groups_mixing_identities_rate": round(mixed / max(1, len(groups)), 4),
        "groups": int(len(np.unique(labels))),
    }


def run(vectors: np.ndarray, person: np.ndarray, order: np.ndarray, threshold: float) -> dict:
    grouping = Grouping(float(threshold))
    embeddings = vectors[order]
    online = np.array([grouping.add(e) for e in embeddings])
    truth = person[order]
    return {"online": measure(online, truth), "regrouped": measure(regroup(online, embeddings, threshold), truth)}


def mean_of(rounds: list[dict]) -> dict:
    return {
        stage: {k: round(float(np.mean([r[stage][k] for r in rounds])), 4) for k in rounds[0][stage]}
        for stage in rounds[0]
    }


def choose(rows: list[dict]) -> float:
    pure = [
        r["threshold"]
        for r in rows
        if r["online"]["bcubed_precision"] >= PURITY_TARGET and r["regrouped"]["bcubed_precision"] >= PURITY_TARGET
    ]
    return min(pure) if pure else max(r["threshold"] for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw-dir", type=Path, default=Path("../shared/datasets/lfw-dev"))
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-photos", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "unknowns.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data = embed_all(args.lfw_dir, args.cache_dir)
    person, _ = identities(data["names"])
    detected = data["detected"]
    orders = [scenario(person, detected, args.max_photos, seed) for seed in range(args.seeds)]
    rows = []
    for threshold in THRESHOLDS:
        row = {"threshold": float(threshold), **mean_of([run(data["vectors"], person, o, threshold) for o in orders])}
        log.info("%.3f %s", threshold, row)
        rows.append(row)
    chosen = choose(rows)
    counts = np.bincount(person[orders[0]])
    write_json(
        args.out,
        {
            "purpose": "choose UNKNOWNS_GROUP_THRESHOLD",
            "model": str(data["model"]),
            "photos": int(len(orders[0])),
            "recurring_identities": int(np.count_nonzero(counts > 1)),
            "passers_by": int(np.count_nonzero(counts == 1)),
            "seeds": args.seeds,
            "max_photos_per_identity": args.max_photos,
            "purity_target": PURITY_TARGET,
            "chosen_threshold": chosen,
            "rows": rows,
            "machine": machine_info(),
        },
    )
    log.info("chosen threshold %.3f -> %s", chosen, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
