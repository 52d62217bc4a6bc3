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
from web.forms import (
    bool_field,
    gallery_field,
    page_cursor,
    page_limit,
    reject_unknown_fields,
    reject_unknown_query,
    require_consent,
    webhook_field,
)
from web.idempotency import idempotent
from web.ratelimits import batch_limit
from web.waiting import submitted

bp = Blueprint("enrollments", __name__, url_prefix="/api/v1/enrollments")
MANAGERS = (Role.admin, Role.operator)


@bp.before_request
def _limit_body() -> None:
    """A batch may be larger than one photo: raise the body limit before anything parses it."""
    request.max_content_length = get_settings().max_batch_bytes


@bp.post("")
@roles_required(*MANAGERS)
@limiter.limit(batch_limit)
@idempotent
def submit():
    """202 {batch_id, total}; `force=true` lets photos that do not resemble an existing person's
    faces be added to it (audited)."""
    reject_unknown_fields({"images", "manifest", "archive", "consent", "gallery", "webhook_url", "force"})
    require_consent()
    gallery = gallery_field()
    force = bool_field("force")
    webhook_url = webhook_field()
    batch = services.submit_batch(
        get_session(),
        current_account(),
        entries=read_entries(),
        gallery_name=gallery,
        webhook_url=webhook_url,
        force=force,
    )
    return submitted({"batch_id": str(batch.id), "total": batch.total})


@bp.get("")
@roles_required(*MANAGERS)
def list_batches():
    """The caller's batches, newest first (keyset pagination), without their items."""
    reject_unknown_query({"limit", "cursor"})
    page = services.list_batches(get_session(), current_account(), limit=page_limit(), cursor=page_cursor())
    return jsonify(page)


@bp.get("/<uuid:batch_id>")
@roles_required(*MANAGERS)
def show(batch_id: uuid.UUID):
    session = get_session()
    batch = services.find_batch(session, current_account(), batch_id)
    if batch is None:
        raise NotFound("batch_not_found", "No such batch.")
    return jsonify(batch_document(session, batch))
