"""Persons: enroll from a photo, add photos, list, show, delete."""

from __future__ import annotations

import uuid

from flask import Blueprint, jsonify, request

from domain.models import Role
from web import services
from web.auth import current_account, roles_required
from web.db import get_session
from web.extensions import limiter
from web.forms import (
    gallery_field,
    image_field,
    page_limit,
    reject_unknown_fields,
    require_consent,
    text_field,
    webhook_field,
)
from web.ratelimits import submit_limit
from web.waiting import accepted, wait_seconds

bp = Blueprint("persons", __name__, url_prefix="/api/v1/persons")
MANAGERS = (Role.admin, Role.operator)


@bp.post("")
@roles_required(*MANAGERS)
@limiter.limit(submit_limit)
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
def add_face(person_id: uuid.UUID):
    reject_unknown_fields({"image", "webhook_url"})
    session = get_session()
    person = services.load_person(session, current_account(), person_id)
    webhook_url = webhook_field()
    wait = wait_seconds()
    upload = image_field()
    job = services.submit_face(session, current_account(), person, upload.data, webhook_url)
    return accepted(job, {"job_id": str(job.id)}, wait)


@bp.get("")
@roles_required(*MANAGERS)
def list_persons():
    limit = page_limit()
    gallery = request.args.get("gallery") or "default"
    page = services.list_persons(
        get_session(), current_account(), gallery_name=gallery, limit=limit, cursor=request.args.get("cursor")
    )
    return jsonify(page)


@bp.get("/<uuid:person_id>")
@roles_required()
def show(person_id: uuid.UUID):
    person = services.load_person(get_session(), current_account(), person_id, with_faces=True)
    return jsonify(services.person_document(person, faces=person.faces))


@bp.delete("/<uuid:person_id>")
@roles_required()
def remove(person_id: uuid.UUID):
    session = get_session()
    account = current_account()
    services.delete_person(session, account, services.load_person(session, account, person_id))
    return "", 204
