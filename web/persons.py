"""Persons: enroll from a photo, add photos, list, find by external_id, show, change, delete; and a
person's faces, to inspect and repair (remove a wrong photo's embedding)."""

from __future__ import annotations

import uuid

from flask import Blueprint, jsonify, request

from domain.models import Role
from web import services
from web.auth import current_account, roles_required
from web.db import get_session
from web.extensions import limiter
from web.forms import (
    bool_field,
    gallery_field,
    image_field,
    page_cursor,
    page_limit,
    person_changes,
    reject_unknown_fields,
    reject_unknown_query,
    require_consent,
    text_field,
    valid_gallery_name,
    webhook_field,
)
from web.idempotency import idempotent
from web.ratelimits import submit_limit
from web.waiting import accepted, wait_seconds

bp = Blueprint("persons", __name__, url_prefix="/api/v1/persons")
MANAGERS = (Role.admin, Role.operator)


@bp.post("")
@roles_required(*MANAGERS)
@limiter.limit(submit_limit)
@idempotent
def enroll():
    reject_unknown_fields({"name", "image", "consent", "gallery", "external_id", "webhook_url"})
    require_consent()
    name = text_field("name", required=True)
    gallery = gallery_field()
    external_id = text_field("external_id")
    webhook_url = webhook_field()
    wait = wait_seconds()
    upload = image_field()
    person, job = services.submit_enrollment(
        get_session(),
        current_account(),
        name=name,
        image=upload.data,
        gallery_name=gallery,
        external_id=external_id,
        webhook_url=webhook_url,
    )
    return accepted(job, {"person_id": str(person.id), "job_id": str(job.id)}, wait)


@bp.post("/<uuid:person_id>/faces")
@roles_required()  # any role; load_person lets users reach only their own linked person
@limiter.limit(submit_limit)
@idempotent
def add_face(person_id: uuid.UUID):
    """Another photo of the person; refused as `face_mismatch` if it does not resemble the
    person's faces, unless `force=true` (audited)."""
    reject_unknown_fields({"image", "webhook_url", "force"})
    session = get_session()
    person = services.load_person(session, current_account(), person_id)
    force = bool_field("force")
    webhook_url = webhook_field()
    wait = wait_seconds()
    upload = image_field()
    job = services.submit_face(session, current_account(), person, upload.data, webhook_url, force=force)
    return accepted(job, {"job_id": str(job.id)}, wait)


@bp.get("/<uuid:person_id>/faces")
@roles_required()
def list_faces(person_id: uuid.UUID):
    session = get_session()
    person = services.load_person(session, current_account(), person_id)
    return jsonify({"items": services.list_faces(session, person)})


@bp.delete("/<uuid:person_id>/faces/<uuid:face_id>")
@roles_required()
def remove_face(person_id: uuid.UUID, face_id: uuid.UUID):
    session = get_session()
    account = current_account()
    services.delete_face(session, account, services.load_person(session, account, person_id), face_id)
    return "", 204


@bp.get("")
@roles_required(*MANAGERS)
def list_persons():
    reject_unknown_query({"gallery", "external_id", "limit", "cursor"})
    limit = page_limit()
    gallery = valid_gallery_name(request.args.get("gallery") or "default")
    page = services.list_persons(
        get_session(),
        current_account(),
        gallery_name=gallery,
        external_id=request.args.get("external_id"),
        limit=limit,
        cursor=page_cursor(),
    )
    return jsonify(page)


@bp.get("/<uuid:person_id>")
@roles_required()
def show(person_id: uuid.UUID):
    person = services.load_person(get_session(), current_account(), person_id, with_faces=True)
    return jsonify(services.person_document(person, faces=person.faces))


@bp.patch("/<uuid:person_id>")
@roles_required(*MANAGERS)
def change(person_id: uuid.UUID):
    """JSON `{name?, external_id?, metadata?}`: external_id null removes it; metadata replaces the old."""
    session = get_session()
    account = current_account()
    person = services.load_person(session, account, person_id, with_faces=True)
    services.update_person(session, account, person, person_changes())
    return jsonify(services.person_document(person, faces=person.faces))


@bp.delete("/<uuid:person_id>")
@roles_required()
def remove(person_id: uuid.UUID):
    session = get_session()
    account = current_account()
    services.delete_person(session, account, services.load_person(session, account, person_id))
    return "", 204
