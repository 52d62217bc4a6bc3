"""What a finished recognition or verification job means: match every detected face, or compare two.

Enrollment has its own module (domain/enrollment.py).

These functions take faces already detected and embedded by a worker's engine, so this
package never needs the model (the web process imports it too).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config import Settings
from domain import matching
from domain.enrollment import EmbeddedFace, no_face_error, rounded_box
from domain.errors import FaceError
from domain.models import Face, Job


def recognize(session: Session, job: Job, faces: list[EmbeddedFace], model: str, settings: Settings) -> dict[str, Any]:
    """Match every detected face against the job's gallery."""
    if not faces:
        raise no_face_error()
    params = job.params
    results = []
    for face in faces:
        matches = matching.search(
            session,
            gallery_id=job.gallery_id,
            model=model,
            embedding=face.embedding,
            top_k=params["top_k"],
            threshold=params["threshold"],
            ef_search=settings.hnsw_ef_search,
            exact_max_faces=settings.exact_search_max_faces,
            size_cache_seconds=settings.gallery_size_cache_seconds,
        )
        results.append(
            {
                "bbox": rounded_box(face.bbox),
                "det_score": round(float(face.det_score), 4),
                "quality": face.quality,
                "matches": [m.as_dict() for m in matches],
            }
        )
    return {"faces": results, "threshold": params["threshold"], "model": model}


def verify(
    session: Session, job: Job, probe: list[EmbeddedFace], other: list[EmbeddedFace] | None, model: str
) -> dict[str, Any]:
    """1:1: the probe's largest face against a second photo's largest face, or against the
    job's person (its best-matching enrolled face, as in recognition)."""
    if not probe or (other is not None and not other):
        raise no_face_error()
    if other is not None:
        similarity = float(np.dot(probe[0].embedding, other[0].embedding))
    else:
        best = session.execute(
            select(func.max(1 - Face.embedding.cosine_distance(probe[0].embedding))).where(
                Face.person_id == job.person_id, Face.model == model
            )
        ).scalar_one_or_none()
        if best is None:
            raise FaceError("no_enrolled_face", "The person has no enrolled face for this model.")
        similarity = float(best)
    threshold = job.params["threshold"]
    return {
        "similarity": round(similarity, 4),
        "same_person": similarity >= threshold,
        "threshold": threshold,
        "person_id": str(job.person_id) if job.person_id else None,
        "model": model,
    }
