"""Search a gallery with a face already stored (its embedding): who else does it look like?

No photo and no model: the stored embedding goes to the same vector search as a recognition
(domain/matching.py), at the same threshold (domain/recognition.gallery_threshold).
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from domain import audit, matching
from domain.callers import Caller
from domain.errors import NotFound
from domain.models import Face
from domain.recognition import gallery_threshold, threshold_choice
from web.services.access import load_person, require_gallery
from web.settings import app_settings


def _visible_face(session: Session, caller: Caller, face_id: uuid.UUID) -> Face:
    """The face if the caller may see its person, else 404 `face_not_found` (as for a missing one)."""
    face = session.execute(select(Face).where(Face.id == face_id)).scalar_one_or_none()
    try:
        if face is None:
            raise NotFound("face_not_found", "No such face.")
        load_person(session, caller, face.person_id)
    except NotFound:
        raise NotFound(
            "face_not_found", "No such face: GET /api/v1/persons/{person_id}/faces lists a person's faces."
        ) from None
    return face


def search_by_face(
    session: Session,
    caller: Caller,
    *,
    face_id: uuid.UUID,
    gallery_name: str | None,
    top_k: int,
    threshold: float | None,
) -> dict[str, Any]:
    """The persons of the gallery (default: the face's own) that the stored face matches, best
    first. The face itself is left out, as in Rekognition's SearchFaces; its person's other faces
    are not, so the person appears when another of its photos matches this one."""
    face = _visible_face(session, caller, face_id)
    gallery = require_gallery(session, caller, gallery_name) if gallery_name else face.person.gallery
    settings = app_settings()
    chosen = threshold_choice(threshold, gallery.match_threshold)
    policy = gallery_threshold(session, gallery.id, chosen, face.model, settings)
    embedding = np.asarray(face.embedding, dtype=np.float32)
    # One more than asked: the face's own person may rank first on the face itself, and is then
    # judged on its other faces only.
    found = matching.search(
        session,
        gallery_id=gallery.id,
        model=face.model,
        embedding=embedding,
        top_k=top_k + 1,
        threshold=policy["threshold"],
        ef_search=settings.hnsw_ef_search,
        exact_max_faces=settings.exact_search_max_faces,
        size_cache_seconds=settings.gallery_size_cache_seconds,
    )
    matches = [_without_the_face_itself(session, match, face, embedding, policy["threshold"]) for match in found]
    ranked = sorted((m for m in matches if m is not None), key=lambda m: m.similarity, reverse=True)[:top_k]
    audit.record(session, caller, "search", "face", face.id, gallery=gallery.name)
    session.commit()
    return {
        "face_id": str(face.id),
        "person_id": str(face.person_id),
        "gallery": gallery.name,
        "matches": [m.as_dict() for m in ranked],
        **policy,
        "model": face.model,
    }


def _without_the_face_itself(
    session: Session, match: matching.Match, face: Face, embedding: np.ndarray, threshold: float
) -> matching.Match | None:
    if match.person_id != face.person_id:
        return match
    similarity = session.execute(
        select(func.max(1 - Face.embedding.cosine_distance(embedding))).where(
            Face.person_id == face.person_id, Face.model == face.model, Face.id != face.id
        )
    ).scalar_one_or_none()
    if similarity is None or similarity < threshold:
        return None
    return matching.Match(match.person_id, match.name, float(similarity), match.external_id, match.metadata)
