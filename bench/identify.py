"""Rank-1 identification on the labeled photos of ../shared/datasets/faces.

    python -m bench.identify --faces-dir DIR [--out bench/results]

Every identity with at least two single-person photos takes part. With k enrolled photos
(k = 1, 2) the first k photos (by name) are enrolled and every other photo is a probe. A
person's score is its best-matching enrolled face, as in the service's search. Identities
with a single photo are never enrolled: they are the unknown people, who must not match at
the configured threshold. Each photo goes through the worker's engine (decode, detect,
align, embed the largest face).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from config import load_settings
from domain.images import decode_bgr
from workers.engine import FaceEngine

SKIP_FOLDERS = ("_near_dup",)  # crops of another photo: not independent samples


def labeled_photos(root: Path) -> dict[str, list[str]]:
    by_identity: dict[str, list[str]] = defaultdict(list)
    with (root / "labels.tsv").open() as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if row["kind"] == "single" and row["identity"] != "-" and not any(s in row["path"] for s in SKIP_FOLDERS):
                by_identity[row["identity"]].append(row["path"])
    return {identity: sorted(paths) for identity, paths in by_identity.items()}


def embed_largest(engine: FaceEngine, path: Path) -> np.ndarray | None:
    bgr = decode_bgr(path.read_bytes())
    faces = engine.detect(bgr)
    engine.embed(bgr, faces[:1])
    return faces[0].embedding if faces else None


def identify(embeddings: dict[str, np.ndarray | None], photos: dict[str, list[str]], enrolled: int, threshold: float):
    known = {identity: paths for identity, paths in photos.items() if len(paths) >= 2}
    gallery = [
        (identity, embeddings[path])
        for identity, paths in known.items()
        for path in paths[:enrolled]
        if embeddings[path] is not None
    ]
    names = sorted({identity for identity, _ in gallery})
    matrix = np.stack([vector for _, vector in gallery])
    owners = np.array([names.index(identity) for identity, _ in gallery])

    def best_person(vector: np.ndarray) -> tuple[str, float]:
        similarities = matrix @ vector
        per_person = np.full(len(names), -1.0)
        np.maximum.at(per_person, owners, similarities)
        index = int(per_person.argmax())
        return names[index], float(per_person[index])

    probes = correct = accepted_correct = 0
    failures = []
    for identity, paths in known.items():
        for path in paths[enrolled:]:
            probes += 1
            if embeddings[path] is None:
                failures.append({"probe": path, "expected": identity, "got": None})
                continue
            name, similarity = best_person(embeddings[path])
            correct += name == identity
            accepted_correct += name == identity and similarity >= threshold
            if name != identity:
                failures.append({"probe": path, "expected": identity, "got": name, "similarity": round(similarity, 3)})
    unknown = [path for paths in photos.values() if len(paths) == 1 for path in paths]
    false_accepts = [
        path for path in unknown if embeddings[path] is not None and best_person(embeddings[path])[1] >= threshold
    ]
    return {
        "enrolled_per_person": enrolled,
        "persons": len(names),
        "probes": probes,
        "rank1": round(correct / probes, 4) if probes else None,
        "rank1_at_threshold": round(accepted_correct / probes, 4) if probes else None,
        "unknown_probes": len(unknown),
        "unknown_false_accepts": len(false_accepts),
        "failures": failures,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.identify")
    parser.add_argument("--faces-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    settings = load_settings()
    engine = FaceEngine(settings)
    photos = labeled_photos(args.faces_dir)
    started = time.perf_counter()
    embeddings = {path: embed_largest(engine, args.faces_dir / path) for paths in photos.values() for path in paths}
    elapsed = time.perf_counter() - started
    results = [identify(embeddings, photos, k, settings.match_threshold) for k in (1, 2)]
    args.out.mkdir(parents=True, exist_ok=True)
    document = {
        "threshold": settings.match_threshold,
        "model": engine.model_name,
        "photos": len(embeddings),
        "undetected": sum(vector is None for vector in embeddings.values()),
        "seconds": round(elapsed, 1),
        "results": results,
    }
    (args.out / "identify.json").write_text(json.dumps(document, indent=2) + "\n")
    for result in results:
        print(
            f"identify enrolled={result['enrolled_per_person']} persons={result['persons']} "
            f"probes={result['probes']} rank1={result['rank1']:.4f} "
            f"rank1_at_threshold={result['rank1_at_threshold']:.4f} "
            f"unknown_false_accepts={result['unknown_false_accepts']}/{result['unknown_probes']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
