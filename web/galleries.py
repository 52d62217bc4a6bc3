"""Galleries: named collections of persons, owned by an operator (or admin)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from domain.models import Role
from web import services
from web.auth import current_account, roles_required
from web.db import get_session
from web.forms import GALLERY_NAME, bad_request, json_body

bp = Blueprint("galleries", __name__, url_prefix="/api/v1/galleries")
MANAGERS = (Role.admin, Role.operator)


def _name(value: str) -> str:
    if not GALLERY_NAME.match(value):
        raise bad_request("invalid_field", "The gallery name may hold letters, digits, '_', '.' and '-' (1-100).")
    return value


@bp.post("")
@roles_required(*MANAGERS)
def create():
    name = _name(json_body(required=("name",))["name"])
    gallery = services.create_gallery(get_session(), current_account(), name)
    return jsonify(services.gallery_document(gallery, 0)), 201


@bp.get("")
@roles_required(*MANAGERS)
def list_galleries():
    return jsonify({"items": services.list_galleries(get_session(), current_account())})


@bp.delete("/<name>")
@roles_required(*MANAGERS)
def remove(name: str):
    services.delete_gallery(get_session(), current_account(), _name(name))
    return "", 204
