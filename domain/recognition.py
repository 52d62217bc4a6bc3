"""What a finished job means for the gallery: store an enrolled face, or match every detected face.

These functions take faces already detected and embedded by a worker's engine, so this
package never needs the model (the web process imports it too).
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from config import Settings
from domain import matching
from domain.errors import FaceError
from domain.models import Face, Job, Person


class EmbeddedFace(Protocol):
    bbox: list[float]
    det_score: float
    embedding: np.ndarray | None
    quality: dict[str, float]


# Reasons an enrollment photo is refused, checked in this order.
def check_quality(quality: dict[str, float], gates: dict[str, float]) -> None:
    if quality["face_size"] < gates["min_face_size"]:
        raise FaceError(
            "face_too_small",
            f"The face is {quality['face_size']:.0f} px; at least {gates['min_face_size']:.0f} px are needed.",
        )
    if quality["det_score"] < gates["min_det_score"]:
        raise FaceError(
            "low_confidence",
            f"The detector is not confident this is a face "
            f"({quality['det_score']:.2f} < {gates['min_det_score']:.2f}).",
        )
    if quality["sharpness"] < gates["min_sharpness"]:
        raise FaceError(
            "too_blurry",
            f"The face is too blurred (sharpness {quality['sharpness']:.0f} < {gates['min_sharpness']:.0f}).",
        )
    if abs(quality["yaw"]) > gates["max_yaw"]:
        raise FaceError(
            "extreme_pose",
            f"The face is turned too far ({quality['yaw']:.0f} degrees; at most {gates['max_yaw']:.0f}).",
        )


def rounded_box(bbox: list[float]) -> list[float]:
    return [round(float(v), 1) for v in bbox]


def no_face_error() -> FaceError:
    return FaceError("no_face", "No face was found in the photo.")


def enroll(session: Session, job: Job, faces: list[EmbeddedFace], model: str) -> dict[str, Any]:
    """Store the largest face (faces arrive largest first) as a new face of the job's person.

    Idempotent: the face row is keyed by the job id, so a redelivered job stores nothing new.
    """
    if not faces:
        raise no_face_error()
    person = session.get(Person, job.person_id) if job.person_id else None
    if person is None:
        raise FaceError("person_deleted", "The person was deleted before the photo was processed.")
    face = faces[0]
    if gates := job.params.get("quality_gates"):
        check_quality(face.quality, gates)
    session.execute(
        insert(Face)
        .values(
            id=uuid.uuid4(),
            person_id=person.id,
            gallery_id=person.gallery_id,
            source_job_id=job.id,
            embedding=face.embedding,
            model=model,
            det_score=float(face.det_score),
            bbox=rounded_box(face.bbox),
        )
        .on_conflict_do_nothing(index_elements=[Face.source_job_id])
    )
    face_id = session.execute(select(Face.id).where(Face.source_job_id == job.id)).scalar_one()
    return {
        "person_id": str(person.id),
        "face_id": str(face_id),
        "det_score": round(float(face.det_score), 4),
        "bbox": rounded_box(face.bbox),
        "faces_detected": len(faces),
        "quality": face.quality,
    }


def discard_unfinished_person(session: Session, job: Job) -> None:
    """A person created by a failed enrollment and left without any face is removed again."""
    if not job.params.get("created_person") or job.person_id is None:
        return
    has_faces = session.execute(select(func.count()).where(Face.person_id == job.person_id)).scalar_one()
    if not has_faces:
        session.execute(delete(Person).where(Person.id == job.person_id))


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
