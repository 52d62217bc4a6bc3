"""Benchmark only: the worker's face model and pixel decode replaced by a null engine.

`make bench-ceiling` (bench/ceiling.py) starts the stack with this folder first on PYTHONPATH, so
that every Python process of that stack imports this file at start-up (Python's `site` imports a
`sitecustomize` module wherever it finds one). It is the only way to select the null engine: no
setting, environment variable or code path of the service knows it, and the container image does
not ship bench/ (Dockerfile). tests/unit/test_null_engine.py checks both.

What is replaced, once `workers.engine` and `workers.pipeline` are imported:
- `workers.engine.FaceEngine`: one fixed face a photo (a frontal face 120 px across, its quality
  measured once), embedded as a unit vector drawn from a seed of the photo's bytes, so the same
  photo gives the same embedding (an enrolled photo matches itself) and different photos differ
  (the duplicate-identity check lets a gallery be enrolled).
- `workers.pipeline.decode`: no pixels, only that seed (a 64-bit hash of the bytes).
Everything else (web, validation, database, Redis, Celery, the search) runs as in production: what
is left is the queue's own cost.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable
from types import ModuleType

EMBEDDING_DIM = 512
FACE_BBOX = [100.0, 100.0, 220.0, 250.0]
FACE_KPS = [[138.0, 160.0], [182.0, 160.0], [160.0, 190.0], [142.0, 218.0], [178.0, 218.0]]


def _null_engine_class(engine_module: ModuleType) -> type:
    import numpy as np

    from workers import quality

    class NullEngine:
        """The FaceEngine interface the pipeline uses, at almost no cost."""

        def __init__(self, settings) -> None:
            self.settings = settings
            self.pack = engine_module.resolve_pack(settings)  # the real pack's name: galleries pin it
            self.model_name = self.pack.model_name
            self.providers = ["null"]
            self._landmarker = None
            self._crop = np.random.default_rng(0).integers(0, 255, (112, 112, 3), dtype=np.uint8)
            self._face = engine_module.DetectedFace(bbox=list(FACE_BBOX), det_score=0.9, kps=np.array(FACE_KPS))
            self._face.quality = quality.measure(self._face.bbox, 0.9, self._face.kps, self._crop)

        def decode_long_side(self) -> int:
            return 0

        def detect(self, bgr, max_faces: int = 0, scale: int = 1) -> list:
            face = copy.copy(self._face)
            face.seed = int.from_bytes(bgr.tobytes()[:8], "little")
            return [face]

        def embed(self, bgr, faces: list, scale: int = 1) -> None:
            self.embed_aligned(faces, self.align(bgr, faces, scale))

        def align(self, bgr, faces: list, scale: int = 1) -> list:
            return [self._crop for _ in faces]

        def embed_aligned(self, faces: list, crops: list) -> None:
            for face, crop in zip(faces, crops, strict=True):
                vector = np.random.default_rng(face.seed).standard_normal(EMBEDDING_DIM).astype(np.float32)
                face.embedding = vector / np.linalg.norm(vector)
                face.crop = crop

        def assess(self, bgr, faces: list, scale: int = 1) -> None:
            for face in faces:
                face.quality = dict(self._face.quality)

        def add_landmarks(self, bgr, faces: list, scale: int = 1) -> None:
            for face in faces:
                face.landmarks = np.zeros((106, 2))

        def analyze(self, bgr, max_faces: int = 0) -> list:
            faces = self.detect(bgr, max_faces)
            self.embed(bgr, faces)
            return faces

    return NullEngine


def _patch_engine(module: ModuleType) -> None:
    module.FaceEngine = _null_engine_class(module)


def _patch_pipeline(module: ModuleType) -> None:
    import numpy as np

    from domain.images import Decoded

    def null_decode(data: bytes, min_long_side: int = 0, max_scale: int = 8) -> Decoded:
        seed = hashlib.blake2b(data, digest_size=8).digest()
        return Decoded(np.frombuffer(seed, dtype=np.uint8).reshape(1, 8, 1), 1)

    module.decode = null_decode


PATCHES: dict[str, Callable[[ModuleType], None]] = {
    "workers.engine": _patch_engine,
    "workers.pipeline": _patch_pipeline,
}


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Runs a patch on a module right after it is executed, before any importer sees it."""

    def find_spec(self, name, path, target=None):
        if name not in PATCHES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        execute = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            PATCHES[name](module)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _PatchAfterImport())
