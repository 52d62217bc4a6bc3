"""Persons and their faces: documents, listing, changes, deletion."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from domain import audit, erasure, person_merge
from domain.callers import Caller
from domain.errors import NotFound, ServiceError
from domain.jobs import iso
from domain.models import Face, Person
from web.pagination import keyset_page
from web.services.access import load_person, require_gallery
from web.services.submissions import person_exists


def face_document(face: Face) -> dict[str, Any]:
    return {
        "id": str(face.id),
        "model": face.model,
        "det_score": round(face.det_score, 4),
        "bbox": face.bbox,
        "quality": face.quality,
        # A prefix is enough to tell two photos apart; the full hash would only help to probe
        # whether a given photo was enrolled.
        "photo_sha256_prefix": face.source_sha256[:12] if face.source_sha256 else None,
        "crop_url": crop_url(face) if face.has_crop else None,
        "created_at": iso(face.created_at),
    }


def crop_url(face: Face) -> str:
    return f"/api/v1/persons/{face.person_id}/faces/{face.id}/crop"


def face_crop(session: Session, person: Person, face_id: uuid.UUID) -> bytes:
    """The JPEG of one face of a person the caller may see (404 `crop_not_found` when the face has
    none: enrolled before crops were kept, or with STORE_FACE_CROPS off)."""
    found = session.execute(select(Face.crop).where(Face.id == face_id, Face.person_id == person.id)).one_or_none()
    if found is None:
        raise NotFound("face_not_found", "The person has no face with this id.")
    if found.crop is None:
        raise NotFound("crop_not_found", "This face has no stored crop (enrolled without one).")
    return found.crop


def person_document(person: Person, *, faces: list[Face] | None = None, face_count: int | None = None) -> dict:
    document: dict[str, Any] = {
        "id": str(person.id),
        "name": person.name,
        "external_id": person.external_id,
        "metadata": person.meta or {},
        "gallery": person.gallery.name,
        "account_id": str(person.account_id) if person.account_id else None,
        "consent": {
            "given_at": iso(person.consent_at),
            "given_by": str(person.consent_by_id) if person.consent_by_id else None,
        },
        "created_at": iso(person.created_at),
    }
    if faces is not None:
        document["faces"] = [face_document(face) for face in faces]
        document["face_count"] = len(faces)
    else:
        document["face_count"] = face_count or 0
    return document


def list_persons(
    session: Session,
    account: Caller,
    *,
    gallery_name: str,
    external_id: str | None,
    limit: int,
    cursor: str | None,
    text: str | None = None,
) -> dict[str, Any]:
    """The gallery's persons in creation order, optionally only the one with `external_id`, or
    those whose name or external_id contains `text` in any case."""
    gallery = require_gallery(session, account, gallery_name)
    face_count = select(func.count(Face.id)).where(Face.person_id == Person.id).correlate(Person).scalar_subquery()
    query = select(Person, face_count).where(Person.gallery_id == gallery.id).options(selectinload(Person.gallery))
    if external_id is not None:
        query = query.where(Person.external_id == external_id)
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            or_(Person.name.ilike(pattern, escape="\\"), Person.external_id.ilike(pattern, escape="\\"))
        )
    page, next_cursor = keyset_page(session, query, (Person.created_at, Person.id), limit=limit, cursor=cursor)
    return {"items": [person_document(p, face_count=n) for p, n in page], "next_cursor": next_cursor}


def update_person(session: Session, account: Caller, person: Person, changes: dict[str, Any]) -> Person:
    """Change a person's name, external_id or metadata (already validated by the handler)."""
    for field, value in changes.items():
        setattr(person, "meta" if field == "metadata" else field, value)
    audit.record(session, account, "person.update", "person", person.id, fields=sorted(changes))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        existing = session.execute(
            select(Person).where(Person.gallery_id == person.gallery_id, Person.external_id == changes["external_id"])
        ).scalar_one_or_none()
        raise person_exists(existing, person.gallery.name) from None
    return person


def list_faces(session: Session, person: Person) -> list[dict[str, Any]]:
    faces = session.execute(select(Face).where(Face.person_id == person.id).order_by(Face.created_at, Face.id))
    return [face_document(face) for face in faces.scalars()]


def delete_face(session: Session, account: Caller, person: Person, face_id: uuid.UUID) -> None:
    """Remove one embedding of the person (a wrong photo): later searches no longer see it."""
    deleted = session.execute(delete(Face).where(Face.id == face_id, Face.person_id == person.id))
    if deleted.rowcount != 1:
        session.rollback()
        raise NotFound("face_not_found", "The person has no face with this id.")
    audit.record(session, account, "person.delete_face", "person", person.id, face_id=str(face_id))
    session.commit()


def delete_person(session: Session, account: Caller, person: Person) -> None:
    """Delete the person; its faces (embeddings) go with it through ON DELETE CASCADE, and the
    finished jobs that name it forget it in the same transaction (domain/erasure.py). The audit
    log keeps its id only."""
    audit.record(session, account, "person.delete", "person", person.id)
    erasure.redact_person(session, person)
    session.execute(delete(Person).where(Person.id == person.id))
    session.commit()


# --- fixing who a face belongs to ------------------------------------------------------------------


def _other_person_of_gallery(session: Session, caller: Caller, person: Person, other_id: uuid.UUID) -> Person:
    """The person `other_id` as a destination for `person`'s faces: one the caller may see, not
    `person` itself, in the same gallery (an embedding is only ever compared within its gallery)."""
    if other_id == person.id:
        raise ServiceError("same_person", "The source and the destination are the same person.")
    other = load_person(session, caller, other_id, with_faces=True)
    if other.gallery_id != person.gallery_id:
        raise ServiceError(
            "different_galleries",
            f"The destination person is in gallery '{other.gallery.name}', not '{person.gallery.name}': faces "
            "move only between persons of one gallery.",
            status=409,
            gallery=other.gallery.name,
        )
    return other


def _hand_over_faces(session: Session, target: Person, faces: Select) -> int:
    """Give the faces `faces` selects to `target`; a face of a photo the target already has is that
    photo twice (one person keeps one face per photo) and is deleted instead. Returns how many moved."""
    already_there = select(Face.source_sha256).where(Face.person_id == target.id, Face.source_sha256.is_not(None))
    session.execute(delete(Face).where(Face.id.in_(faces), Face.source_sha256.in_(already_there)))
    moved = session.execute(update(Face).where(Face.id.in_(faces)).values(person_id=target.id))
    return moved.rowcount


def _reloaded(session: Session, person: Person) -> Person:
    query = select(Person).where(Person.id == person.id)
    query = query.options(selectinload(Person.faces), selectinload(Person.gallery))
    return session.execute(query.execution_options(populate_existing=True)).scalar_one()


def merge_persons(session: Session, caller: Caller, source_id: uuid.UUID, target_id: uuid.UUID) -> Person:
    """One person enrolled twice: every face of `source_id` goes to `target_id`, the finished jobs
    that named `source_id` name `target_id` (domain/person_merge.py), then `source_id` is deleted.
    Returns the target."""
    source = load_person(session, caller, source_id, with_faces=True)
    if source.account_id is not None:
        raise ServiceError(
            "person_linked_to_account",
            "This person is an account's own face profile: merge the other person into it instead.",
            status=409,
        )
    target = _other_person_of_gallery(session, caller, source, target_id)
    moved = _hand_over_faces(session, target, select(Face.id).where(Face.person_id == source.id))
    audit.record(session, caller, "person.merge", "person", target.id, source_id=str(source.id), faces_moved=moved)
    person_merge.hand_over_mentions(session, source, target)
    session.execute(delete(Person).where(Person.id == source.id))
    session.commit()
    return _reloaded(session, target)


def move_face(
    session: Session, caller: Caller, person_id: uuid.UUID, face_id: uuid.UUID, target_id: uuid.UUID
) -> Person:
    """One face enrolled under the wrong person of a gallery: it becomes `target_id`'s. Returns the target."""
    source = load_person(session, caller, person_id)
    face = session.execute(select(Face.id).where(Face.id == face_id, Face.person_id == source.id)).scalar()
    if face is None:
        raise NotFound("face_not_found", "The person has no face with this id.")
    target = _other_person_of_gallery(session, caller, source, target_id)
    _hand_over_faces(session, target, select(Face.id).where(Face.id == face_id))
    audit.record(
        session, caller, "person.move_face", "person", source.id, face_id=str(face_id), to_person_id=str(target.id)
    )
    session.commit()
    return _reloaded(session, target)
