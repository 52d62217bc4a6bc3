"""One face, one name: what an enrollment's face already is in its gallery.

A new face is searched in its gallery, as a recognition would, before it is stored:

- nearly identical (similarity >= ENROLL_SAME_FACE_SIMILARITY) to a face of the same person: it
  is that face again (the same photo re-encoded, resized or with bytes appended) and adds nothing;
- nearly identical to a face of another person: it is that other person's photo again, refused
  as `photo_enrolled_elsewhere`, as the very same bytes are;
- matching another person at or above the gallery's recognition threshold: the face may already
  have a name. `ENROLL_DUPLICATE_IDENTITY=warn` stores it and reports `possible_duplicate_of`;
  `refuse` fails the job `identity_exists`, unless the submission said `force=true` (audited).

0.98 is above every distinct photo of one person measured (LFW genuine pairs: at most 0.960 in
1,500) and below the same photo re-encoded at JPEG quality 95 (at least 0.996) or with bytes
appended (1.0): bench/same_face.py, bench/results/same_face.json.

The policy in force at submission travels with the job (`duplicate_identity`, `same_face_similarity`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from config import Settings
from domain import audit, matching
from domain.errors import FaceError
from domain.job_params import EnrollParams, params_of
from domain.models import Account, Face, Gallery, Job
from domain.recognition import gallery_threshold, threshold_choice

# Persons reported as possible duplicates at most (the best first).
MAX_REPORTED = 5


@dataclass
class Review:
    """What the gallery already holds of a face about to be enrolled for `job.person_id`."""

    same_face: Face | None = None  # this person's own nearly identical face: nothing to add
    possible_duplicate_of: list[dict[str, Any]] = field(default_factory=list)


def review(session: Session, job: Job, embedding: np.ndarray, model: str, settings: Settings) -> Review:
    """Search the gallery for the face (see the module's docstring); raises `photo_enrolled_elsewhere`
    or `identity_exists` as the policy says."""
    threshold = _recognition_threshold(session, job.gallery_id, model, settings)
    asked = params_of(job, EnrollParams).same_face_similarity
    same_face = asked if asked is not None else settings.enroll_same_face_similarity
    matches = matching.search(
        session,
        gallery_id=job.gallery_id,
        model=model,
        embedding=embedding,
        top_k=MAX_REPORTED + 1,
        threshold=min(threshold, same_face),
        ef_search=settings.hnsw_ef_search,
        exact_max_faces=settings.exact_search_max_faces,
        size_cache_seconds=settings.gallery_size_cache_seconds,
    )
    own = next((m for m in matches if m.person_id == job.person_id), None)
    if own is not None and own.similarity >= same_face:
        return Review(same_face=_nearest_face(session, job.person_id, model, embedding))
    others = [m for m in matches if m.person_id != job.person_id and m.similarity >= threshold][:MAX_REPORTED]
    if others and others[0].similarity >= same_face:
        raise FaceError(
            "photo_enrolled_elsewhere",
            f"This face is nearly identical (similarity {others[0].similarity:.3f}) to a face of another person of "
            "the gallery: the same photo, re-encoded. Its face cannot be both of theirs.",
            person_id=str(others[0].person_id),
            similarity=round(others[0].similarity, 4),
        )
    reported = [_reported(m) for m in others]
    if reported and params_of(job, EnrollParams).duplicate_identity == "refuse":
        if not params_of(job, EnrollParams).force:
            raise FaceError(
                "identity_exists",
                # No name in the message: possible_duplicate_of is what erasure redacts (domain/erasure.py).
                f"This face matches {len(reported)} other person(s) of the gallery (possible_duplicate_of) at or "
                f"above its threshold {threshold:.2f}, best at {reported[0]['similarity']:.2f}: one face, two names? "
                "Add the photo to that person, or send force=true to enroll it anyway (audited).",
                possible_duplicate_of=reported,
                threshold=round(threshold, 4),
            )
        _audit_override(session, job, reported)
    return Review(possible_duplicate_of=reported)


def _recognition_threshold(session: Session, gallery_id: uuid.UUID, model: str, settings: Settings) -> float:
    """The threshold a recognition of this gallery would use (its own, else derived from its size)."""
    fixed = session.execute(select(Gallery.match_threshold).where(Gallery.id == gallery_id)).scalar_one_or_none()
    params = threshold_choice(None, fixed)
    return float(gallery_threshold(session, gallery_id, params, model, settings)["threshold"])


def _nearest_face(session: Session, person_id: uuid.UUID, model: str, embedding: np.ndarray) -> Face:
    query = (
        select(Face)
        .where(Face.person_id == person_id, Face.model == model)
        .order_by(Face.embedding.cosine_distance(embedding))
        .limit(1)
    )
    return session.execute(query).scalar_one()


def _reported(match: matching.Match) -> dict[str, Any]:
    return {
        "person_id": str(match.person_id),
        "name": match.name,
        "external_id": match.external_id,
        "similarity": round(match.similarity, 4),
    }


def _audit_override(session: Session, job: Job, reported: list[dict[str, Any]]) -> None:
    """A refused identity enrolled anyway (force=true) is recorded with whom it matched, in the
    transaction that stores the face, on behalf of the account that submitted it."""
    owner = session.get(Account, job.owner_id)
    audit.record(
        session,
        owner,
        "person.identity_forced",
        "person",
        job.person_id,
        job_id=str(job.id),
        matched=[entry["person_id"] for entry in reported],
    )
