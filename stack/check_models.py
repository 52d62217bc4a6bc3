"""Check the face models as a worker will load them: `python -m stack.check_models`.

The image runs it at build (a corrupt or missing model file fails the build, not the first job):
the pack's files match their pinned sha256 (workers.engine.resolve_pack), onnxruntime loads them
with the configured providers, and the six faces of the sample photo shipped inside the
insightface package are found and embedded as unit 512-d vectors. Prints what it checked as JSON;
exits 1 with the reason otherwise. Needs neither PostgreSQL nor Redis.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

SAMPLE_FACES = 6  # t1.jpg: six people side by side


def sample_photo() -> bytes:
    spec = importlib.util.find_spec("insightface")
    if spec is None or spec.origin is None:
        raise RuntimeError("insightface is not installed")
    return (Path(spec.origin).parent / "data" / "images" / "t1.jpg").read_bytes()


def check() -> dict:
    import numpy as np

    from config import get_settings
    from domain.images import decode_bgr
    from workers.engine import FaceEngine, sha256_of

    started = time.perf_counter()
    engine = FaceEngine(get_settings())  # this command is a process of its own: the process's settings
    faces = engine.analyze(decode_bgr(sample_photo()))
    if len(faces) != SAMPLE_FACES:
        raise RuntimeError(f"the sample photo has {SAMPLE_FACES} faces, the detector found {len(faces)}")
    if any(face.embedding is None or face.embedding.shape != (512,) for face in faces):
        raise RuntimeError("the recognizer did not give a 512-d embedding per face")
    norms = [float(np.linalg.norm(face.embedding)) for face in faces]
    if any(abs(norm - 1.0) > 1e-3 for norm in norms):
        raise RuntimeError(f"embeddings are not unit vectors: {norms}")
    return {
        "model": engine.model_name,
        "files": {path.name: sha256_of(path) for path in (engine.pack.detector, engine.pack.recognizer)},
        "providers": engine.providers,
        "faces": len(faces),
        "seconds": round(time.perf_counter() - started, 2),
    }


def main() -> int:
    try:
        result = check()
    except Exception as error:  # any failure fails the build, with its reason
        print(f"model check failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
