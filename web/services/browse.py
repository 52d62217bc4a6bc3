"""Overviews for people looking at their galleries (the console): each answers in a fixed number of
statements, whatever the number of galleries or persons shown, and sees only what the caller may."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from domain import openset
from domain.callers import Caller
from domain.errors import ServiceError
from domain.jobs import iso, job_document
from domain.models import Account, AuditEvent, Face, Gallery, Job, JobStatus, Person
from web.pagination import keyset_page
from web.services.access import load_person, require_gallery, visible_to
from web.settings import app_settings

RECENT_FAILURES = 8


def _threshold(gallery: Gallery, faces: int) -> tuple[float, str, float | None]:
    """The threshold a recognition in the gallery would use now (domain/recognition.py's rule
    without a request threshold), where it comes from, and its expected FPIR."""
    settings = app_settings()
    if gallery.match_threshold is not None:
        threshold, source = gallery.match_threshold, "gallery"
    elif settings.match_fpir > 0:
        threshold, source = openset.threshold_for(faces, settings.match_fpir, settings.match_threshold), "match_fpir"
    else:
        threshold, source = settings.match_threshold, "match_threshold"
    return threshold, source, openset.expected_fpir(threshold, faces) if faces else None


def dashboard(session: Session, caller: Caller) -> dict[str, Any]:
    """The caller's galleries with their sizes and thresholds, its jobs waiting and running, and
    its latest failed jobs (users see only their own jobs, and no galleries)."""
    galleries = []
    if caller.manages_galleries:
        persons = select(func.count(Person.id)).where(Person.gallery_id == Gallery.id).correlate(Gallery)
        faces = select(func.count(Face.id)).where(Face.gallery_id == Gallery.id).correlate(Gallery)
        query = select(Gallery, persons.scalar_subquery(), faces.scalar_subquery()).where(
            Gallery.organisation_id == caller.organisation_id
        )
        if caller.galleries is not None:
            query = query.where(Gallery.name.in_(caller.galleries))
        for gallery, person_count, face_count in session.execute(query.order_by(Gallery.name)):
            threshold, source, fpir = _threshold(gallery, face_count)
            galleries.append(
                {
                    "name": gallery.name,
                    "persons": person_count,
                    "faces": face_count,
                    "threshold": threshold,
                    "threshold_source": source,
                    "expected_fpir": fpir,
                    "created_at": iso(gallery.created_at),
                }
            )
    counts = dict(
        session.execute(
            select(Job.status, func.count())
            .where(visible_to(caller, Job), Job.status.in_((JobStatus.queued, JobStatus.running)))
            .group_by(Job.status)
        ).all()
    )
    failed = session.execute(
        select(Job)
        .where(visible_to(caller, Job), Job.status == JobStatus.failed)
        .order_by(Job.finished_at.desc().nulls_last(), Job.id)
        .limit(RECENT_FAILURES)
    ).scalars()
    return {
        "galleries": galleries,
        "queued": counts.get(JobStatus.queued, 0),
        "running": counts.get(JobStatus.running, 0),
        "failed_jobs": [job_document(job) for job in failed],
    }


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def person_cards(
    session: Session, caller: Caller, *, gallery_name: str, search: str | None, limit: int, cursor: str | None
) -> dict[str, Any]:
    """A page of the gallery's persons, each with its face count and the id of its first face
    with a crop (its picture), optionally only those whose name or external_id contains `search`."""
    gallery = require_gallery(session, caller, gallery_name)
    face_count = select(func.count(Face.id)).where(Face.person_id == Person.id).correlate(Person)
    first_face = (
        select(Face.id)
        .where(Face.person_id == Person.id, Face.crop.is_not(None))
        .order_by(Face.created_at, Face.id)
        .limit(1)
        .correlate(Person)
    )
    query = select(Person, face_count.scalar_subquery(), first_face.scalar_subquery()).where(
        Person.gallery_id == gallery.id
    )
    if search:
        pattern = _like(search)
        query = query.where(or_(Person.name.ilike(pattern), Person.external_id.ilike(pattern)))
    page, next_cursor = keyset_page(session, query, (Person.created_at, Person.id), limit=limit, cursor=cursor)
    items = [
        {
            "id": str(person.id),
            "name": person.name,
            "external_id": person.external_id,
            "face_count": count,
            "first_face_id": str(face_id) if face_id else None,
        }
        for person, count, face_id in page
    ]
    return {
        "gallery": gallery.name,
        "unknowns_enabled": gallery.unknowns_enabled,
        "items": items,
        "next_cursor": next_cursor,
    }


def resolve_person(session: Session, caller: Caller, gallery_id: uuid.UUID, text: str) -> Person:
    """The person an operator named by id, external_id or exact name, in the same gallery as the
    person at hand (an id may name any person the caller may see; the service it goes to decides)."""
    text = text.strip()
    try:
        return load_person(session, caller, uuid.UUID(text))
    except ValueError:
        pass
    matches = (
        session.execute(
            select(Person)
            .where(Person.gallery_id == gallery_id, or_(Person.external_id == text, Person.name == text))
            .limit(2)
        )
        .scalars()
        .all()
    )
    if len(matches) != 1:
        problem = "No person" if not matches else "More than one person"
        raise ServiceError(
            "person_not_found" if not matches else "person_ambiguous",
            f"{problem} in this gallery has the name or external_id '{text}': use the person's id.",
            status=404 if not matches else 409,
        )
    return load_person(session, caller, matches[0].id)


def list_accounts(session: Session, caller: Caller, *, limit: int, cursor: str | None) -> dict[str, Any]:
    """The organisation's accounts in creation order (what GET /api/v1/accounts lists)."""
    query = select(Account).where(Account.organisation_id == caller.organisation_id)
    page, next_cursor = keyset_page(session, query, (Account.created_at, Account.id), limit=limit, cursor=cursor)
    return {"items": [account for (account,) in page], "next_cursor": next_cursor}


def audit_page(
    session: Session, caller: Caller, *, action: str | None, limit: int, cursor: str | None
) -> dict[str, Any]:
    """The organisation's audit events, newest first (what GET /api/v1/audit lists)."""
    query = select(AuditEvent).where(AuditEvent.organisation_id == caller.organisation_id)
    if action:
        query = query.where(AuditEvent.action == action)
    page, next_cursor = keyset_page(
        session, query, (AuditEvent.at, AuditEvent.id), limit=limit, cursor=cursor, descending=True
    )
    return {"items": [event for (event,) in page], "next_cursor": next_cursor}
