"""Galleries: documents, creation, listing, their own threshold, deletion."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from domain import audit
from domain.callers import Caller
from domain.errors import ServiceError
from domain.jobs import iso
from domain.models import Gallery, Job, Person
from domain.unknowns import PoolSetting
from web.pagination import keyset_page
from web.services import unknowns as unknowns_service
from web.services.access import get_or_create_gallery, require_gallery


def gallery_document(gallery: Gallery, person_count: int) -> dict[str, Any]:
    return {
        "id": str(gallery.id),
        "name": gallery.name,
        "owner_id": str(gallery.owner_id) if gallery.owner_id else None,
        "person_count": person_count,
        "match_threshold": gallery.match_threshold,
        "unknowns": {"enabled": gallery.unknowns_enabled, "retention_days": gallery.unknowns_retention_days},
        "created_at": iso(gallery.created_at),
    }


def create_gallery(
    session: Session,
    account: Caller,
    name: str,
    match_threshold: float | None = None,
    pool: PoolSetting | None = None,
) -> Gallery:
    gallery, created = get_or_create_gallery(session, account, name)
    if not created:
        raise ServiceError("gallery_exists", f"You already have a gallery named '{name}'.", status=409)
    gallery.match_threshold = match_threshold
    audit.record(session, account, "gallery.create", "gallery", gallery.id, name=name)
    if pool is not None:
        unknowns_service.apply_setting(session, account, gallery, pool)
    session.commit()
    return gallery


UNCHANGED: Any = object()  # a change_gallery field that was not sent


def change_gallery(
    session: Session, account: Caller, name: str, *, threshold: Any = UNCHANGED, pool: PoolSetting | None = None
) -> dict[str, Any]:
    """Change what was sent: its own threshold (None: follow MATCH_FPIR again), its unknowns pool."""
    gallery = require_gallery(session, account, name)
    if threshold is not UNCHANGED:
        audit.record(session, account, "gallery.threshold", "gallery", gallery.id, match_threshold=threshold)
        gallery.match_threshold = threshold
    if pool is not None:
        unknowns_service.apply_setting(session, account, gallery, pool)
    session.commit()
    count = session.execute(select(func.count()).where(Person.gallery_id == gallery.id)).scalar_one()
    return gallery_document(gallery, count)


def list_galleries(session: Session, account: Caller, *, limit: int, cursor: str | None) -> dict[str, Any]:
    """The caller's galleries in creation order (keyset pagination, like every list)."""
    persons = select(func.count(Person.id)).where(Person.gallery_id == Gallery.id).correlate(Gallery)
    query = select(Gallery, persons.scalar_subquery()).where(Gallery.organisation_id == account.organisation_id)
    if account.galleries is not None:
        query = query.where(Gallery.name.in_(account.galleries))
    page, next_cursor = keyset_page(session, query, (Gallery.created_at, Gallery.id), limit=limit, cursor=cursor)
    return {"items": [gallery_document(gallery, count) for gallery, count in page], "next_cursor": next_cursor}


def set_gallery_threshold(session: Session, account: Caller, name: str, threshold: float | None) -> dict[str, Any]:
    """Fix the gallery's recognition threshold, or (None) let it follow MATCH_FPIR again."""
    return change_gallery(session, account, name, threshold=threshold)


def delete_gallery(session: Session, account: Caller, name: str) -> None:
    """Delete a gallery with all its persons and their faces (cascade), and its jobs (explicitly:
    jobs outlive a gallery only when an enrollment that created it failed, see Job.gallery_id)."""
    gallery = require_gallery(session, account, name)
    audit.record(session, account, "gallery.delete", "gallery", gallery.id, name=name)
    session.execute(delete(Job).where(Job.gallery_id == gallery.id))
    session.execute(delete(Gallery).where(Gallery.id == gallery.id))
    session.commit()
