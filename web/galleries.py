"""Galleries: named collections of persons, owned by an operator (or admin)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from domain.models import Role
from web import services
from web.auth import current_account, roles_required
from web.db import get_session
from web.forms import json_body, page_cursor, page_limit, reject_unknown_query, valid_gallery_name

bp = Blueprint("galleries", __name__, url_prefix="/api/v1/galleries")
MANAGERS = (Role.admin, Role.operator)


@bp.post("")
@roles_required(*MANAGERS)
def create():
    name = valid_gallery_name(json_body(required=("name",))["name"])
    gallery = services.create_gallery(get_session(), current_account(), name)
    return jsonify(services.gallery_document(gallery, 0)), 201


@bp.get("")
@roles_required(*MANAGERS)
def list_galleries():
    reject_unknown_query({"limit", "cursor"})
    cursor = page_cursor()
    return jsonify(services.list_galleries(get_session(), current_account(), limit=page_limit(), cursor=cursor))


@bp.delete("/<name>")
@roles_required(*MANAGERS)
def remove(name: str):
    services.delete_gallery(get_session(), current_account(), valid_gallery_name(name))
    return "", 204
