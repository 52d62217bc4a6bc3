"""Recognition: find who is in a photo, as an asynchronous job."""

from __future__ import annotations

from flask import Blueprint, jsonify

from config import get_settings
from domain.models import Role
from web import services
from web.auth import current_account, roles_required
from web.db import get_session
from web.extensions import limiter
from web.forms import gallery_field, image_field, number_field, reject_unknown_fields
from web.ratelimits import submit_limit

bp = Blueprint("recognize", __name__, url_prefix="/api/v1")


@bp.post("/recognize")
@roles_required(Role.admin, Role.operator)
@limiter.limit(submit_limit)
def recognize():
    settings = get_settings()
    reject_unknown_fields({"image", "gallery", "threshold", "top_k", "max_faces"})
    gallery = gallery_field()
    threshold = number_field(
        "threshold", float, settings.match_threshold, settings.min_threshold, settings.max_threshold
    )
    top_k = number_field("top_k", int, settings.default_top_k, 1, settings.max_top_k)
    max_faces = number_field("max_faces", int, settings.default_max_faces, 1, settings.max_max_faces)
    upload = image_field()
    job = services.submit_recognition(
        get_session(),
        current_account(),
        image=upload.data,
        gallery_name=gallery,
        threshold=threshold,
        top_k=top_k,
        max_faces=max_faces,
    )
    return jsonify({"job_id": str(job.id)}), 202
