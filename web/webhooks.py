"""The caller's webhook signing secret."""

from __future__ import annotations

from flask import jsonify

from domain import audit, webhooks
from domain.models import Role
from web.auth import current_caller, roles_required
from web.db import get_session
from web.schemas import WebhookSecret
from web.validation import AUTH, errors, resource

bp = resource("webhooks", __name__, "/api/v1/webhooks", "The HMAC secret that signs your webhooks")


@bp.get("/secret", responses={200: WebhookSecret, **errors(*AUTH)})
@roles_required(Role.admin, Role.operator)
def secret():
    """The organisation's webhook signing secret (created on first use)"""
    session = get_session()
    value = webhooks.secret_of(session, current_caller().organisation_id)
    session.commit()
    return jsonify({"secret": value})


@bp.post("/secret/rotate", responses={200: WebhookSecret, **errors(*AUTH)})
@roles_required(Role.admin)
def rotate():
    """Replace the webhook signing secret"""
    session = get_session()
    caller = current_caller()
    value = webhooks.rotate_secret(session, caller.organisation_id)
    audit.record(session, caller, "webhook.rotate_secret", "organisation", caller.organisation_id)
    session.commit()
    return jsonify({"secret": value})
