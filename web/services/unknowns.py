"""Recurring unknown faces of a gallery: its setting, the groups, and naming or merging them.

The rules live in domain/unknowns.py; these functions authorize (the gallery must be one the
caller manages), call them, audit and commit.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from config import Settings
from domain import audit, unknowns
from domain.callers import Caller
from domain.errors import NotFound, ServiceError
from domain.models import Gallery, Person, UnknownGroup
from domain.persons import new_person
from web.services.access import require_gallery
from web.services.submissions import person_exists


def apply_setting(session: Session, caller: Caller, gallery: Gallery, setting: unknowns.PoolSetting) -> None:
    """Turn the pool on or off (off deletes it) and set its retention; audited. The caller commits."""
    enabled, retention_days = setting.enabled, setting.retention_days
    if gallery.unknowns_enabled and not enabled:
        deleted = unknowns.delete_pool(session, gallery.id)
        audit.record(session, caller, "unknowns.disable", "gallery", gallery.id, groups_deleted=deleted)
    elif enabled and not gallery.unknowns_enabled:
        audit.record(session, caller, "unknowns.enable", "gallery", gallery.id, retention_days=retention_days)
    elif enabled and retention_days != gallery.unknowns_retention_days:
        audit.record(session, caller, "unknowns.retention", "gallery", gallery.id, retention_days=retention_days)
    gallery.unknowns_enabled = enabled
    gallery.unknowns_retention_days = retention_days


def _pool(session: Session, caller: Caller, gallery_name: str) -> Gallery:
    gallery = require_gallery(session, caller, gallery_name)
    if not gallery.unknowns_enabled:
        raise ServiceError(
            "unknowns_disabled",
            f"Gallery '{gallery_name}' keeps no unknown faces: turn it on with "
            f'PATCH /api/v1/galleries/{gallery_name} {{"unknowns": {{"enabled": true}}}} (docs/UNKNOWNS.md).',
            status=409,
        )
    return gallery


def _group(session: Session, gallery: Gallery, number: int) -> UnknownGroup:
    group = unknowns.find_group(session, gallery, number)
    if group is None:
        raise NotFound("unknown_not_found", f"Gallery '{gallery.name}' has no unknown #{number}.")
    return group


def list_groups(
    session: Session, caller: Caller, gallery_name: str, *, order: str, limit: int, offset: int
) -> dict[str, Any]:
    gallery = _pool(session, caller, gallery_name)
    items, total = unknowns.list_groups(session, gallery, order=order, limit=limit, offset=offset)
    return {"items": items, "total": total}


def show_group(session: Session, caller: Caller, gallery_name: str, number: int) -> dict[str, Any]:
    gallery = _pool(session, caller, gallery_name)
    group = _group(session, gallery, number)
    faces = unknowns.group_faces(session, group)
    samples = [f.id for f in sorted(faces, key=lambda f: f.det_score, reverse=True)[: unknowns.SAMPLE_FACES]]
    return {
        **unknowns.group_document(group, len(faces), samples, gallery.name),
        "items": [unknowns.face_document(f, group.number, gallery.name) for f in faces],
    }


def face_crop(session: Session, caller: Caller, gallery_name: str, number: int, face_id: uuid.UUID) -> bytes:
    gallery = _pool(session, caller, gallery_name)
    crop = unknowns.face_crop(session, _group(session, gallery, number), face_id)
    if crop is None:
        raise NotFound("crop_not_found", "No crop is kept for this face.")
    return crop


def enroll_group(
    session: Session,
    caller: Caller,
    gallery_name: str,
    number: int,
    *,
    name: str,
    external_id: str | None,
    metadata: dict[str, Any],
    settings: Settings,
) -> dict[str, Any]:
    """A person of the gallery made from the group's best faces (their embeddings and crops, no
    photo needed), then the group is removed: the stranger is known now."""
    gallery = _pool(session, caller, gallery_name)
    group = _group(session, gallery, number)
    if external_id is not None:
        existing = session.execute(
            select(Person).where(Person.gallery_id == gallery.id, Person.external_id == external_id)
        ).scalar_one_or_none()
        if existing is not None:
            raise person_exists(existing, gallery_name)
    faces = unknowns.group_faces(session, group)
    centroid = np.asarray(group.centroid, dtype=np.float32)
    chosen = unknowns.best_faces(
        faces, centroid, settings.enroll_consistency_threshold, settings.unknowns_enroll_max_faces
    )
    if not chosen:
        raise ServiceError("no_consistent_face", f"No face of unknown #{number} agrees with the group.", status=409)
    person = new_person(session, gallery.id, name, external_id=external_id, metadata=metadata, consent_by_id=caller.id)
    session.flush()
    session.add_all(unknowns.faces_for_person(group, chosen, person.id))
    audit.record(
        session,
        caller,
        "unknowns.enroll",
        "person",
        person.id,
        unknown_id=number,
        faces=len(chosen),
        gallery=gallery.name,
    )
    session.delete(group)
    session.commit()
    return {"person_id": str(person.id), "faces_enrolled": len(chosen), "faces_left_out": len(faces) - len(chosen)}


def merge_groups(session: Session, caller: Caller, gallery_name: str, number: int, into: int) -> dict[str, Any]:
    gallery = _pool(session, caller, gallery_name)
    if number == into:
        raise ServiceError("invalid_field", "A group cannot be merged into itself.", field="into")
    source, target = _group(session, gallery, number), _group(session, gallery, into)
    unknowns.merge(session, source, target)
    audit.record(session, caller, "unknowns.merge", "gallery", gallery.id, unknown_id=number, into=into)
    session.commit()
    return show_group(session, caller, gallery_name, into)


def delete_group(session: Session, caller: Caller, gallery_name: str, number: int) -> None:
    gallery = _pool(session, caller, gallery_name)
    session.delete(_group(session, gallery, number))
    audit.record(session, caller, "unknowns.delete", "gallery", gallery.id, unknown_id=number)
    session.commit()


def delete_face(session: Session, caller: Caller, gallery_name: str, number: int, face_id: uuid.UUID) -> None:
    gallery = _pool(session, caller, gallery_name)
    group = _group(session, gallery, number)
    face = next((f for f in unknowns.group_faces(session, group) if f.id == face_id), None)
    if face is None:
        raise NotFound("face_not_found", f"Unknown #{number} has no such face.")
    session.delete(face)
    session.flush()
    unknowns.recompute(session, group)
    audit.record(
        session, caller, "unknowns.delete_face", "gallery", gallery.id, unknown_id=number, face_id=str(face_id)
    )
    session.commit()
