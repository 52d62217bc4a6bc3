"""Galleries: named collections of persons, owned by an operator (or admin)."""

from __future__ import annotations

from flask import Response, jsonify, request

from domain.models import Role
from domain.unknowns import PoolSetting
from web import services
from web.auth import current_caller, roles_required
from web.db import get_session
from web.schemas import (
    Gallery,
    GalleryCreate,
    GalleryPage,
    GalleryPatch,
    GalleryPath,
    ImportForm,
    JobAccepted,
    PageQuery,
    ReembedQuery,
    UnknownsSetting,
)
from web.services import portability
from web.settings import app_settings
from web.validation import AUTH, errors, resource, validated
from web.waiting import submitted

bp = resource("galleries", __name__, "/api/v1/galleries", "Named collections of persons, one namespace per account")
MANAGERS = (Role.admin, Role.operator)


@bp.post("", responses={201: Gallery, **errors(400, 409, *AUTH)})
@roles_required(*MANAGERS)
@validated
def create(body: GalleryCreate):
    """Create a gallery (enrollment also creates one when needed)"""
    gallery = services.create_gallery(
        get_session(), current_caller(), body.name, body.match_threshold, pool=_pool_setting(body.unknowns)
    )
    return jsonify(services.gallery_document(gallery, 0)), 201


@bp.get("", responses={200: GalleryPage, **errors(400, *AUTH)})
@roles_required(*MANAGERS)
@validated
def list_galleries(query: PageQuery):
    """The caller's galleries in creation order (keyset pagination)"""
    page = services.list_galleries(get_session(), current_caller(), limit=query.limit, cursor=query.cursor)
    return jsonify(page)


@bp.patch("/<name>", responses={200: Gallery, **errors(400, 404, *AUTH)})
@roles_required(*MANAGERS)
@validated
def change(path: GalleryPath, body: GalleryPatch):
    """Change what is sent: `match_threshold` (null: follow MATCH_FPIR and its size again) and
    `unknowns` (recurring unknown faces; turning it off deletes the pool: docs/UNKNOWNS.md)"""
    threshold = body.match_threshold if "match_threshold" in body.model_fields_set else services.UNCHANGED
    document = services.change_gallery(
        get_session(), current_caller(), path.name, threshold=threshold, pool=_pool_setting(body.unknowns)
    )
    return jsonify(document)


def _pool_setting(setting: UnknownsSetting | None) -> PoolSetting | None:
    return PoolSetting(setting.enabled, setting.retention_days) if setting is not None else None


@bp.delete("/<name>", responses={204: None, **errors(400, 404, *AUTH)})
@roles_required(*MANAGERS)
@validated
def remove(path: GalleryPath):
    """Delete a gallery with its persons, faces and jobs"""
    services.delete_gallery(get_session(), current_caller(), path.name)
    return "", 204


@bp.before_request
def _limit_import_body() -> None:
    """An archive may be far larger than a photo: raise the body limit before anything parses it."""
    if request.method == "POST" and request.path.endswith("/import"):
        request.max_content_length = app_settings().gallery_archive_max_bytes + 64 * 1024


def _job_accepted(job) -> tuple[Response, int]:
    return submitted({"job_id": str(job.id)})


@bp.post("/<name>/export", responses={202: JobAccepted, **errors(400, 404, 429, 503, *AUTH)})
@roles_required(*MANAGERS)
@validated
def export(path: GalleryPath):
    """Export the gallery as an archive (a job): settings, persons, consent, face crops and embeddings

    The job's result names the download (`GET /api/v1/exports/{export_id}`), kept for
    GALLERY_EXPORT_TTL_SECONDS and only for this organisation. No original photo is in it.
    """
    return _job_accepted(portability.submit_export(get_session(), current_caller(), path.name))


@bp.post("/<name>/import", responses={202: JobAccepted, **errors(400, 413, 429, 503, *AUTH)})
@roles_required(*MANAGERS)
@validated
def import_archive(path: GalleryPath, form: ImportForm):
    """Import an exported gallery archive into this gallery (created if needed), as a job

    A bad archive (truncated, altered, unsafe names, another format version, too large) is refused
    at once with `invalid_archive` and its `reason`. Faces of the worker's model keep their
    embeddings; others are embedded again from their crops. Importing the same archive again adds nothing.
    """
    archive = form.archive.read()
    job = portability.submit_import(get_session(), current_caller(), path.name, archive, form.on_conflict)
    return _job_accepted(job)


@bp.post("/<name>/reembed", responses={202: JobAccepted, **errors(400, 404, 409, 429, 503, *AUTH)})
@roles_required(*MANAGERS)
@validated
def reembed(path: GalleryPath, query: ReembedQuery):
    """Embed every face again from its crop with the worker's current model (a job)

    Recognition keeps using the old embeddings until the new ones are complete, then switches at once.
    Faces without a crop are listed; the gallery switches anyway only with `skip_missing=true`.
    """
    job = portability.submit_reembed(get_session(), current_caller(), path.name, query.skip_missing)
    return _job_accepted(job)
