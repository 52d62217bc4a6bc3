"""Recognition: find who is in a photo, as an asynchronous job."""

from __future__ import annotations

from flask import Blueprint, request

from config import get_settings
from domain.models import Role
from web import services
from web.auth import current_account, roles_required
from web.db import get_session
from web.extensions import limiter
from web.forms import (
    bad_request,
    gallery_field,
    image_field,
    number_field,
    reject_unknown_fields,
    threshold_field,
    uuid_field,
    webhook_field,
)
from web.idempotency import idempotent
from web.ratelimits import submit_limit
from web.waiting import accepted, wait_seconds

bp = Blueprint("recognize", __name__, url_prefix="/api/v1")


@bp.post("/recognize")
@roles_required(Role.admin, Role.operator)
@limiter.limit(submit_limit)
@idempotent
def recognize():
    """202 {job_id}; with `?wait=N` (N <= 30) 200 and the finished job if it ends within N seconds."""
    settings = get_settings()
    reject_unknown_fields({"image", "gallery", "threshold", "top_k", "max_faces", "webhook_url"})
    gallery = gallery_field()
    threshold = threshold_field()
    top_k = number_field("top_k", int, settings.default_top_k, 1, settings.max_top_k)
    max_faces = number_field("max_faces", int, settings.default_max_faces, 1, settings.max_max_faces)
    webhook_url = webhook_field()
    wait = wait_seconds()
    upload = image_field()
    job = services.submit_recognition(
        get_session(),
        current_account(),
        image=upload.data,
        gallery_name=gallery,
        threshold=threshold,
        top_k=top_k,
        max_faces=max_faces,
        webhook_url=webhook_url,
    )
    return accepted(job, {"job_id": str(job.id)}, wait)


@bp.post("/verify")
@roles_required(Role.admin, Role.operator)
@limiter.limit(submit_limit)
@idempotent
def verify():
    """1:1 verification: `image_a` and `image_b`, or `image` and `person_id`."""
    reject_unknown_fields({"image_a", "image_b", "image", "person_id", "threshold", "webhook_url"})
    threshold = threshold_field()
    webhook_url = webhook_field()
    wait = wait_seconds()
    session = get_session()
    if "person_id" in request.form or "image" in request.files:
        person = services.load_person(session, current_account(), uuid_field("person_id"))
        first, second = image_field("image"), None
    elif "image_a" in request.files or "image_b" in request.files:
        person = None
        first, second = image_field("image_a"), image_field("image_b")
    else:
        raise bad_request("missing_field", "Send image_a and image_b, or image and person_id.")
    job = services.submit_verification(
        session,
        current_account(),
        image=first.data,
        second_image=second.data if second else None,
        person=person,
        threshold=threshold,
        webhook_url=webhook_url,
    )
    return accepted(job, {"job_id": str(job.id)}, wait)
