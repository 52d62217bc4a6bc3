"""Batch enrollment: many photos in one request, one enrollment job per photo."""

from __future__ import annotations

import uuid

from flask import Blueprint, jsonify, request

from config import get_settings
from domain.batches import batch_document
from domain.errors import NotFound
from domain.models import Role
from web import services
from web.auth import current_account, roles_required
from web.batch_input import read_entries
from web.db import get_session
from web.extensions import limiter
from web.forms import gallery_field, reject_unknown_fields, require_consent, webhook_field
from web.ratelimits import batch_limit

bp = Blueprint("enrollments", __name__, url_prefix="/api/v1/enrollments")


@bp.post("")
@roles_required(Role.admin, Role.operator)
@limiter.limit(batch_limit)
def submit():
    request.max_content_length = get_settings().max_batch_bytes  # before the body is parsed
    reject_unknown_fields({"images", "manifest", "archive", "consent", "gallery", "webhook_url"})
    require_consent()
    gallery = gallery_field()
    webhook_url = webhook_field()
    key = (request.headers.get("Idempotency-Key") or "").strip()[:200] or None
    session = get_session()
    account = current_account()
    # Looked up before the photos are read: a retried request costs one query.
    if key and (earlier := services.batch_for_key(session, account, key)):
        return jsonify({"batch_id": str(earlier.id), "total": earlier.total}), 202
    batch = services.submit_batch(
        session, account, entries=read_entries(), gallery_name=gallery, idempotency_key=key, webhook_url=webhook_url
    )
    return jsonify({"batch_id": str(batch.id), "total": batch.total}), 202


@bp.get("/<uuid:batch_id>")
@roles_required(Role.admin, Role.operator)
def show(batch_id: uuid.UUID):
    session = get_session()
    batch = services.find_batch(session, current_account(), batch_id)
    if batch is None:
        raise NotFound("batch_not_found", "No such batch.")
    return jsonify(batch_document(session, batch))
