"""Batch enrollment: many photos in one request, one enrollment job per photo."""

from __future__ import annotations

from flask import jsonify, request

from domain.batches import batch_document
from domain.models import Role
from web import services
from web.auth import current_caller, roles_required
from web.batch_input import read_entries
from web.db import get_session
from web.extensions import limiter
from web.forms import checked_webhook
from web.idempotency import idempotent
from web.ratelimits import batch_limit
from web.schemas import Batch, BatchAccepted, BatchForm, BatchPage, BatchPath, IdempotencyHeader, PageQuery
from web.settings import app_settings
from web.validation import AUTH, errors, resource, validated
from web.waiting import submitted

bp = resource("enrollments", __name__, "/api/v1/enrollments", "Batch enrollment: a manifest of photos, or a ZIP")
MANAGERS = (Role.admin, Role.operator)


@bp.before_request
def _limit_body() -> None:
    """A batch may be larger than one photo: raise the body limit before anything parses it."""
    request.max_content_length = app_settings().max_batch_bytes


@bp.post("", responses={202: BatchAccepted, **errors(400, 409, 413, 503, *AUTH)})
@roles_required(*MANAGERS)
@limiter.limit(batch_limit)
@idempotent
@validated
def submit(form: BatchForm, header: IdempotencyHeader):
    """Batch enrollment: `images` + a JSON `manifest`, or one ZIP `archive` (<person>/<photo>)

    `force=true` lets photos that do not resemble an existing person's faces be added (audited).
    """
    batch = services.submit_batch(
        get_session(),
        current_caller(),
        entries=read_entries(form),
        gallery_name=form.gallery,
        webhook_url=checked_webhook(form.webhook_url),
        force=form.force,
    )
    return submitted({"batch_id": str(batch.id), "total": batch.total})


@bp.get("", responses={200: BatchPage, **errors(400, *AUTH)})
@roles_required(*MANAGERS)
@validated
def list_batches(query: PageQuery):
    """The caller's batches, newest first (keyset pagination), without their items"""
    return jsonify(services.list_batches(get_session(), current_caller(), limit=query.limit, cursor=query.cursor))


@bp.get("/<uuid:batch_id>", responses={200: Batch, **errors(400, 404, *AUTH)})
@roles_required(*MANAGERS)
@validated
def show(path: BatchPath):
    """A batch with its items in manifest order"""
    session = get_session()
    batch = services.load_batch(session, current_caller(), path.batch_id)
    return jsonify(batch_document(session, batch))
