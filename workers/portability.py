"""The worker's side of gallery portability: which recognizer serves a gallery, embedding aligned
crops, and the export, import and re-embedding jobs (the work itself is domain/portability.py).

A gallery is served by the model of its embeddings (`galleries.model`) for as long as the worker
can load that recognizer: the current pack's, the bundled one, or one in PREVIOUS_MODEL_DIRS. So
after MODEL_PACK_DIR changes, galleries keep recognizing with their old embeddings until their
re-embedding switches them.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from config import Settings
from domain import portability
from domain.errors import ServiceError
from domain.images import decode_bgr
from domain.models import Job, JobType
from workers.context import WorkerContext
from workers.engine import RECOGNIZER_PREFIXES, FaceEngine, bundled_pack_dir, sha256_of

log = logging.getLogger(__name__)

GALLERY_JOBS = (JobType.export, JobType.import_, JobType.reembed)


def recognizer_files(engine: FaceEngine, settings: Settings) -> dict[str, Path]:
    """Every recognizer this worker can load, by model name; the engine's own wins a name clash."""
    directories = [*settings.previous_model_dirs, bundled_pack_dir(), engine.pack.recognizer.parent]
    found: dict[str, Path] = {}
    for directory in directories:
        for path in sorted(Path(directory).glob("*.onnx")):
            if path.name.lower().startswith(RECOGNIZER_PREFIXES):
                found[path.stem] = path
    found[engine.model_name] = engine.pack.recognizer
    return found


_file_sha256 = cache(sha256_of)


@cache
def _recognizer(path: Path, threads: int):
    """An ArcFace session for another model than the engine's (built once per worker process)."""
    import onnxruntime as ort
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    log.info("recognizer %s loaded beside the engine's", path.stem)
    return ArcFaceONNX(str(path), session=session)


def recognizer_for(engine: FaceEngine, model: str, settings: Settings):
    """The recognizer of `model`, or None when this worker has no file of it."""
    if model == engine.model_name:
        return engine.recognizer
    path = recognizer_files(engine, settings).get(model)
    return None if path is None else _recognizer(path, settings.ort_intra_threads())


def engine_for(session: Session, job: Job, context: WorkerContext) -> FaceEngine:
    """The engine that embeds this job's faces: with the recognizer of the job's gallery's model.

    A gallery without a model takes the engine's at its first enrollment. A recognition against a
    gallery whose model this worker cannot load fails `model_unavailable`; an enrollment then uses
    the engine's model (the face joins the gallery's searches once the gallery is re-embedded)."""
    engine = context.engine
    model = portability.serving_model(session, job.gallery_id)
    if model is None:
        if job.type is JobType.enroll:
            portability.pin_model(session, job.gallery_id, engine.model_name)
        return engine
    if model == engine.model_name:
        return engine
    recognizer = recognizer_for(engine, model, context.settings)
    if recognizer is None:
        if job.type is JobType.enroll:
            return engine
        raise ServiceError(
            "model_unavailable",
            f"The gallery's faces are embedded with the model {model}, which this worker does not have "
            f"(it runs {engine.model_name}): re-embed the gallery (POST /api/v1/galleries/{{name}}/reembed), "
            "or give the workers that model (PREVIOUS_MODEL_DIRS).",
            status=503,
            model=model,
        )
    serving = copy.copy(engine)  # shares the detector and sessions; only the recognizer differs
    serving.recognizer, serving.model_name = recognizer, model
    return serving


def crop_embedder(recognizer) -> portability.Embed:
    """Embeds aligned 112x112 JPEG crops (what enrollment keeps) with `recognizer`, L2-normalised."""

    def embed(crops: Sequence[bytes]) -> np.ndarray:
        images = [decode_bgr(crop) for crop in crops]
        vectors = recognizer.get_feat(images).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)

    return embed


def run(session: Session, job: Job, archive: bytes | None, context: WorkerContext) -> dict:
    """Run an export, import or re-embedding job."""
    settings, engine = context.settings, context.engine
    if job.type is JobType.export:
        models = {name: {"sha256": _file_sha256(path)} for name, path in recognizer_files(engine, settings).items()}
        return portability.export_gallery(
            session,
            job,
            models=models,
            ttl_seconds=settings.gallery_export_ttl_seconds,
            max_bytes=settings.gallery_archive_max_bytes,
        )
    if job.type is JobType.import_:
        if archive is None:
            raise ServiceError("input_missing", "The job's archive is no longer available.")
        gallery, created, model = portability.import_target(session, job, engine.model_name)
        recognizer = recognizer_for(engine, model, settings)
        return portability.import_gallery(
            session,
            job,
            archive,
            gallery=gallery,
            created=created,
            model=model,
            embed=crop_embedder(recognizer) if recognizer is not None else None,
            max_bytes=settings.gallery_archive_max_bytes,
            metadata_max_bytes=settings.person_metadata_max_bytes,
        )
    return portability.reembed_gallery(session, job, model=engine.model_name, embed=crop_embedder(engine.recognizer))
