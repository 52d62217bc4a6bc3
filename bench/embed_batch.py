"""How many aligned crops one recognizer call should embed (workers/engine.embed_batch).

    python -m bench.embed_batch [--photos 100] [--rounds 5] [--sizes 1,4,8,16,32]

The faces of real photos (../shared/datasets/faces, else LFW or the insightface samples) are
detected and aligned once; then the same crops are embedded in recognizer calls of each size,
sizes alternating round by round in one process with one onnxruntime thread (as a worker
process runs). Reported: the median process CPU a face of each size, and the largest difference
of an embedding from the one-call result (the sizes must agree). Output:
bench/results/embed_batch.json.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from bench.ceiling import load_photos
from bench.common import RESULTS_DIR, machine_info, write_json

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", default="1,4,8,16,32")
    parser.add_argument("--faces-dir", default=str(ROOT.parent / "shared" / "datasets" / "faces"))
    args = parser.parse_args(argv)
    os.environ.setdefault("ORT_THREADS", "1")

    from config import get_settings
    from domain.timing import StageTimer
    from workers import pipeline
    from workers.context import WorkerContext

    engine = WorkerContext.of(get_settings()).engine
    faces, crops = [], []
    for path in load_photos(Path(args.faces_dir), args.photos):
        try:
            found, aligned = pipeline._detect_and_align(engine, path.read_bytes(), StageTimer(), 100)
        except Exception:  # noqa: BLE001 - a photo the service refuses is left out here too
            continue
        faces += found
        crops += aligned
    reference = engine.recognizer.get_feat(crops)

    def embed(size: int) -> tuple[float, float]:
        started = time.process_time()
        vectors = np.concatenate([engine.recognizer.get_feat(crops[s : s + size]) for s in range(0, len(crops), size)])
        spent = time.process_time() - started
        return 1000 * spent / len(crops), float(np.abs(vectors - reference).max())

    sizes = [int(size) for size in args.sizes.split(",")]
    runs: dict[int, list[float]] = {size: [] for size in sizes}
    deviation = dict.fromkeys(sizes, 0.0)
    for size in sizes:  # warm-up
        embed(size)
    for round_ in range(args.rounds):
        for size in sizes if round_ % 2 == 0 else sizes[::-1]:
            ms, differs = embed(size)
            runs[size].append(round(ms, 3))
            deviation[size] = max(deviation[size], differs)
    medians = {size: float(np.median(values)) for size, values in runs.items()}
    best = min(medians, key=medians.get)
    out = {
        "machine": machine_info(),
        "providers": engine.providers,
        "faces": len(crops),
        "cpu_ms_a_face_median": {str(size): round(ms, 2) for size, ms in medians.items()},
        "relative_to_best": {str(size): round(ms / medians[best], 3) for size, ms in medians.items()},
        "runs_ms_a_face": {str(size): values for size, values in runs.items()},
        "max_abs_difference_from_one_call": {str(size): value for size, value in deviation.items()},
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    write_json(RESULTS_DIR / "embed_batch.json", out)
    for size in sizes:
        print(f"calls of {size:2d}: {medians[size]:6.2f} ms a face ({medians[size] / medians[best]:.2f}x the best)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
