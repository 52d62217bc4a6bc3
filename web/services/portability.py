"""Gallery export, import and re-embedding: one job each for a whole gallery (domain/portability.py
does the work in a worker); an export's archive is downloaded by its organisation until it expires."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session, undefer

from domain import audit, budget, gallery_archive
from domain.callers import Caller
from domain.errors import NotFound, ServiceError
from domain.job_params import ExportParams, ImportParams, ReembedParams
from domain.jobs import create_job, now
from domain.models import UNFINISHED, Face, Gallery, GalleryExport, Job, JobType
from web.services.access import check_scope, find_gallery, require_gallery
from web.services.submissions import _commit_and_enqueue
from web.settings import app_settings

# Cost units (domain/budget.py: about 0.1 s of a worker's time each) per 100 faces a job handles;
# capped at the organisation's whole budget, so that one large job is admitted when nothing else waits.
FACES_PER_COST_UNIT = {JobType.export: 1000, JobType.import_: 100, JobType.reembed: 100}


def _cost(job_type: JobType, faces: int) -> int:
    return min(1 + faces // FACES_PER_COST_UNIT[job_type], app_settings().org_max_pending_cost)


def _gallery_faces(session: Session, gallery: Gallery) -> int:
    return session.execute(select(func.count()).where(Face.gallery_id == gallery.id)).scalar_one()


def _submit(
    session: Session,
    account: Caller,
    job_type: JobType,
    target: Gallery | None,
    faces: int,
    params: ExportParams | ImportParams | ReembedParams,
    archive: bytes | None = None,
) -> Job:
    """Store the job (an import: with its archive), audit it, check the organisation's budget, commit, enqueue."""
    cost = _cost(job_type, faces)
    job = create_job(
        session,
        job_type=job_type,
        owner_id=account.id,
        organisation_id=account.organisation_id,
        image=archive,
        gallery_id=target.id if target else None,
        params=params,
        cost=cost,
        api_key_id=account.api_key_id,
    )
    audit.record(
        session,
        account,
        f"gallery.{job_type.value}",
        "gallery",
        target.id if target else None,
        job_id=str(job.id),
        **params.stored(),
    )
    (priority,) = budget.admit(session, account.organisation_id, [cost], limit=app_settings().org_max_pending_cost)
    _commit_and_enqueue(session, job, priority=priority)
    return job


def submit_export(session: Session, account: Caller, gallery_name: str) -> Job:
    gallery = require_gallery(session, account, gallery_name)
    faces = _gallery_faces(session, gallery)
    return _submit(session, account, JobType.export, gallery, faces, ExportParams(gallery=gallery.name))


def submit_import(session: Session, account: Caller, gallery_name: str, archive: bytes, on_conflict: str) -> Job:
    """Refuse a bad archive at once (400 `invalid_archive`, nothing stored), else queue its import;
    the gallery is created by the import if it does not exist (and not if the import fails)."""
    check_scope(account, gallery_name)
    settings = app_settings()
    content = gallery_archive.read(
        archive,
        max_bytes=settings.gallery_archive_max_bytes,
        metadata_max_bytes=settings.person_metadata_max_bytes,
    )
    gallery = find_gallery(session, account, gallery_name)
    faces = len(content.manifest.faces())
    params = ImportParams(
        gallery=gallery_name,
        on_conflict=on_conflict,
        archive_sha256=gallery_archive.checksum_of(archive),
        archive_persons=len(content.manifest.persons),
        archive_faces=faces,
        source_gallery=content.manifest.gallery.name,
    )
    return _submit(session, account, JobType.import_, gallery, faces, params, archive=archive)


def submit_reembed(session: Session, account: Caller, gallery_name: str, skip_missing: bool) -> Job:
    gallery = require_gallery(session, account, gallery_name)
    running = session.execute(
        select(Job.id).where(Job.gallery_id == gallery.id, Job.type == JobType.reembed, Job.status.in_(UNFINISHED))
    ).first()
    if running:
        raise ServiceError(
            "reembed_in_progress",
            "A re-embedding of this gallery is already under way.",
            status=409,
            job_id=str(running[0]),
        )
    faces = _gallery_faces(session, gallery)
    params = ReembedParams(gallery=gallery.name, skip_missing=skip_missing)
    return _submit(session, account, JobType.reembed, gallery, faces, params)


def load_export(session: Session, account: Caller, export_id: uuid.UUID) -> tuple[GalleryExport, str]:
    """The archive and its gallery's name, for the caller's organisation (an API key: within its
    scope); 410 `export_expired` once its time is over (it is purged soon after)."""
    found = session.execute(
        select(GalleryExport, Gallery.name)
        .join(Gallery, Gallery.id == GalleryExport.gallery_id)
        .options(undefer(GalleryExport.archive))
        .where(GalleryExport.id == export_id, GalleryExport.organisation_id == account.organisation_id)
    ).one_or_none()
    if found is None or not account.may_use_gallery(found[1]):
        raise NotFound("export_not_found", "No such export (it may have been deleted with a person of its gallery).")
    export, gallery_name = found
    if export.expires_at <= now():
        raise ServiceError(
            "export_expired",
            "This export's download time is over (GALLERY_EXPORT_TTL_SECONDS); export the gallery again.",
            status=410,
        )
    audit.record(session, account, "gallery.export_download", "gallery", export.gallery_id, export_id=str(export.id))
    session.commit()
    return export, gallery_name
