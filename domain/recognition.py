"""What a finished recognition or verification job means: match every detected face, or compare two.

Enrollment has its own module (domain/enrollment.py).

These functions take faces already detected and embedded by a worker's engine, so this
package never needs the model (the web process imports it too).
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from config import Settings
from domain import matching, openset, unknowns
from domain.enrollment import EmbeddedFace, best_similarity, no_face_error, rounded_box
from domain.errors import FaceError, ServiceError
from domain.faces import face_fields
from domain.job_params import RecognizeParams, VerifyParams, params_of
from domain.models import Gallery, Job

RECURRING_UNKNOWNS = "recurring_unknowns"


def threshold_choice(requested: float | None, gallery_own: float | None) -> dict[str, Any]:
    """The first two steps of gallery_threshold's rule, taken when the search is asked for (a
    job's params keep them, so a queued job keeps the gallery threshold in force when it was
    sent): the request's threshold, else the gallery's own `match_threshold`; with neither,
    `{"threshold": None}` leaves the last step, from the gallery's size, to the search."""
    if requested is not None:
        return {"threshold": requested, "threshold_source": "request"}
    if gallery_own is not None:
        return {"threshold": gallery_own, "threshold_source": "gallery"}
    return {"threshold": None}


def open_set_threshold(session: Session, job: Job, model: str, settings: Settings) -> dict[str, Any]:
    """The threshold of this recognition job (gallery_threshold)."""
    return gallery_threshold(session, job.gallery_id, job.params, model, settings)


def gallery_threshold(
    session: Session, gallery_id: uuid.UUID, params: dict[str, Any], model: str, settings: Settings
) -> dict[str, Any]:
    """The threshold of a search of this gallery and what it means for a stranger in it.

    The request's `threshold`, else the gallery's own `match_threshold` (both already chosen in
    `params`, threshold_choice), else one derived from MATCH_FPIR and the gallery's face count
    (never below MATCH_THRESHOLD): a stranger is compared with every face, so a fixed threshold
    names more strangers as galleries grow. The calibration belongs to one recognizer; another
    model gets MATCH_THRESHOLD and no estimate.
    """
    faces = matching.gallery_face_count(session, gallery_id, model, settings.gallery_size_cache_seconds)
    calibrated = openset.load_tail().model == model
    threshold, source = params.get("threshold"), params.get("threshold_source", "request")
    if threshold is None:
        if calibrated and settings.match_fpir > 0:
            threshold = openset.threshold_for(faces, settings.match_fpir, settings.match_threshold)
            source = "match_fpir"
        else:
            threshold, source = settings.match_threshold, "match_threshold"
    return {
        "threshold": threshold,
        "threshold_source": source,
        "gallery_faces": faces,
        "expected_fpir": openset.expected_fpir(threshold, faces) if calibrated else None,
    }


def recognize(session: Session, job: Job, faces: list[EmbeddedFace], model: str, settings: Settings) -> dict[str, Any]:
    """Match every detected face against the job's gallery, at its open-set threshold."""
    if not faces:
        raise no_face_error()
    policy = open_set_threshold(session, job, model, settings)
    recurring: list[str] = []
    results = _match_faces(session, job, faces, model, settings, policy, unknowns_pool(session, job), recurring)
    # The groups this job made recurring, for the worker to announce after the commit (never stored).
    return {"faces": results, **policy, "model": model, RECURRING_UNKNOWNS: recurring}


def recognize_photos(
    session: Session,
    job: Job,
    photos: list[list[EmbeddedFace] | ServiceError],
    model: str,
    settings: Settings,
) -> dict[str, Any]:
    """A recognition of several photos: each photo's faces matched as `recognize` matches one
    photo's, in the order sent. A photo that could not be read, or shows no face, carries its own
    error and no faces; the others are unaffected."""
    policy = open_set_threshold(session, job, model, settings)
    pool = unknowns_pool(session, job)
    recurring: list[str] = []
    results = []
    for photo in photos:
        if isinstance(photo, ServiceError) or not photo:
            error = photo if isinstance(photo, ServiceError) else no_face_error()
            results.append({"faces": [], "error": error.as_dict()})
        else:
            results.append({"faces": _match_faces(session, job, photo, model, settings, policy, pool, recurring)})
    return {"photos": results, **policy, "model": model, RECURRING_UNKNOWNS: recurring}


def _match_faces(
    session: Session,
    job: Job,
    faces: list[EmbeddedFace],
    model: str,
    settings: Settings,
    policy: dict[str, Any],
    pool: Gallery | None,
    recurring: list[str],
) -> list[dict[str, Any]]:
    """Each face's fields and matches; unmatched faces go to the unknowns `pool` (when on), and
    the groups they made recurring are added to `recurring`."""
    gates = settings.enrollment_policy()
    results = []
    for face in faces:
        matches = matching.search(
            session,
            gallery_id=job.gallery_id,
            model=model,
            embedding=face.embedding,
            top_k=params_of(job, RecognizeParams).top_k,
            threshold=policy["threshold"],
            ef_search=settings.hnsw_ef_search,
            exact_max_faces=settings.exact_search_max_faces,
            size_cache_seconds=settings.gallery_size_cache_seconds,
        )
        result = {**face_fields(face, gates), "matches": [m.as_dict() for m in matches]}
        if not matches and pool is not None:
            sighting = unknowns.sight(session, pool, face, model, job, settings)
            result["unknown"] = sighting.as_dict()
            if sighting.became_recurring:
                recurring.append(str(sighting.group_id))
        results.append(result)
    return results


def unknowns_pool(session: Session, job: Job) -> Gallery | None:
    """The job's gallery when its unmatched faces go to the unknowns pool: asked for at submission
    (params `unknowns`) and still on now (read under the gallery's lock, so turning the pool off
    while the job runs stores nothing)."""
    if not params_of(job, RecognizeParams).unknowns:
        return None
    gallery = session.execute(select(Gallery).where(Gallery.id == job.gallery_id).with_for_update()).scalar_one()
    return gallery if gallery.unknowns_enabled else None


def verify(
    session: Session, job: Job, probe: list[EmbeddedFace], other: list[EmbeddedFace] | None, model: str
) -> dict[str, Any]:
    """1:1: the probe's largest face against a second photo's largest face, or against the
    job's person (its closest enrolled face, as in recognition). The result says which face of
    each photo was compared and how many each photo had: a group photo compares its largest
    face, which may not be the person meant.

    The threshold is the 1:1 one (MATCH_THRESHOLD or the request's): a pair question has no
    gallery, so the gallery-size rule of open-set recognition does not apply."""
    names = ("image_a", "image_b") if other is not None else ("image",)
    for name, faces in zip(names, (probe, other), strict=False):
        if not faces:
            raise FaceError("no_face", f"No face was found in {name}.", image=name)
    if other is not None:
        similarity = float(np.dot(probe[0].embedding, other[0].embedding))
    else:
        similarity = best_similarity(session, job.person_id, model, probe[0].embedding)
        if similarity is None:
            raise FaceError("no_enrolled_face", "The person has no enrolled face for this model.")
    threshold = params_of(job, VerifyParams).threshold
    compared = {name: _compared_face(faces) for name, faces in zip(names, (probe, other), strict=False)}
    return {
        "similarity": round(similarity, 4),
        "same_person": similarity >= threshold,
        "threshold": threshold,
        "person_id": str(job.person_id) if job.person_id else None,
        "model": model,
        "faces": compared,
        "notes": [
            f"{name} shows {face['faces_detected']} faces; its largest was compared."
            for name, face in compared.items()
            if face["faces_detected"] > 1
        ],
    }


def _compared_face(faces: list[EmbeddedFace]) -> dict[str, Any]:
    return {
        "bbox": rounded_box(faces[0].bbox),
        "det_score": round(float(faces[0].det_score), 4),
        "faces_detected": len(faces),
    }
