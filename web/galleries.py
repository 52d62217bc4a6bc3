"""Galleries: named collections of persons, owned by an operator (or admin)."""

from __future__ import annotations

from flask import jsonify

from domain.models import Role
from web import services
from web.auth import current_caller, roles_required
from web.db import get_session
from web.schemas import Gallery, GalleryCreate, GalleryPage, GalleryPatch, GalleryPath, PageQuery
from web.validation import AUTH, errors, resource, validated

bp = resource("galleries", __name__, "/api/v1/galleries", "Named collections of persons, one namespace per account")
MANAGERS = (Role.admin, Role.operator)


@bp.post("", responses={201: Gallery, **errors(400, 409, *AUTH)})
@roles_required(*MANAGERS)
@validated
def create(body: GalleryCreate):
    """Create a gallery (enrollment also creates one when needed)"""
    gallery = services.create_gallery(get_session(), current_caller(), body.name, body.match_threshold)
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
    """Fix the gallery's recognition threshold, or (null) let it follow MATCH_FPIR and its size"""
    return jsonify(services.set_gallery_threshold(get_session(), current_caller(), path.name, body.match_threshold))


@bp.delete("/<name>", responses={204: None, **errors(400, 404, *AUTH)})
@roles_required(*MANAGERS)
@validated
def remove(path: GalleryPath):
    """Delete a gallery with its persons, faces and jobs"""
    services.delete_gallery(get_session(), current_caller(), path.name)
    return "", 204
