"""Recurring unknown faces of a gallery (opt-in): list the strangers, look at their faces, name
one as a person, merge two, delete (docs/UNKNOWNS.md)."""

from __future__ import annotations

from flask import Response, jsonify

from domain.models import Role
from web.auth import current_caller, roles_required
from web.db import get_session
from web.persons import CROP_RESPONSE
from web.schemas import (
    GalleryPath,
    UnknownEnroll,
    UnknownEnrolled,
    UnknownFacePath,
    UnknownGroupFaces,
    UnknownGroupPage,
    UnknownMerge,
    UnknownsPath,
    UnknownsQuery,
)
from web.services import unknowns as service
from web.settings import app_settings
from web.validation import AUTH, errors, resource, validated

bp = resource(
    "unknowns",
    __name__,
    "/api/v1/galleries",
    "Recurring unknown faces: strangers seen again, with stable ids, for galleries that opt in",
)
MANAGERS = (Role.admin, Role.operator)
ONE = "/<name>/unknowns/<int:unknown_id>"


@bp.get("/<name>/unknowns", responses={200: UnknownGroupPage, **errors(400, 404, 409, *AUTH)})
@roles_required(*MANAGERS)
@validated
def list_groups(path: GalleryPath, query: UnknownsQuery):
    """The gallery's strangers, most recently seen (or, `order=count`, most seen) first"""
    return jsonify(
        service.list_groups(
            get_session(), current_caller(), path.name, order=query.order, limit=query.limit, offset=query.offset
        )
    )


@bp.get(ONE, responses={200: UnknownGroupFaces, **errors(400, 404, 409, *AUTH)})
@roles_required(*MANAGERS)
@validated
def show(path: UnknownsPath):
    """One stranger with every face kept of them, newest first"""
    return jsonify(service.show_group(get_session(), current_caller(), path.name, path.unknown_id))


@bp.get(ONE + "/faces/<uuid:face_id>/crop", responses={200: CROP_RESPONSE, **errors(400, 404, 409, *AUTH)})
@roles_required(*MANAGERS)
@validated
def crop(path: UnknownFacePath):
    """A stranger's face as its aligned 112x112 crop (JPEG)"""
    data = service.face_crop(get_session(), current_caller(), path.name, path.unknown_id, path.face_id)
    response = Response(data, mimetype="image/jpeg")
    response.headers["Cache-Control"] = "private, max-age=300"
    return response


@bp.post(ONE + "/enroll", responses={201: UnknownEnrolled, **errors(400, 404, 409, *AUTH)})
@roles_required(*MANAGERS)
@validated
def enroll(path: UnknownsPath, body: UnknownEnroll):
    """Name the stranger: a person made from the group's best faces (consent required); the group goes"""
    enrolled = service.enroll_group(
        get_session(),
        current_caller(),
        path.name,
        path.unknown_id,
        name=body.name,
        external_id=body.external_id,
        metadata=body.metadata,
        settings=app_settings(),
    )
    return jsonify(enrolled), 201


@bp.post(ONE + "/merge", responses={200: UnknownGroupFaces, **errors(400, 404, 409, *AUTH)})
@roles_required(*MANAGERS)
@validated
def merge(path: UnknownsPath, body: UnknownMerge):
    """One stranger seen as two: this group's faces join `into`, which keeps its id"""
    return jsonify(service.merge_groups(get_session(), current_caller(), path.name, path.unknown_id, body.into))


@bp.delete(ONE, responses={204: None, **errors(400, 404, 409, *AUTH)})
@roles_required(*MANAGERS)
@validated
def delete(path: UnknownsPath):
    """Forget a stranger: the group and every face of it"""
    service.delete_group(get_session(), current_caller(), path.name, path.unknown_id)
    return "", 204


@bp.delete(ONE + "/faces/<uuid:face_id>", responses={204: None, **errors(400, 404, 409, *AUTH)})
@roles_required(*MANAGERS)
@validated
def delete_face(path: UnknownFacePath):
    """Forget one face of a stranger"""
    service.delete_face(get_session(), current_caller(), path.name, path.unknown_id, path.face_id)
    return "", 204
