"""The caller's webhook signing secret."""

from __future__ import annotations

from flask import jsonify

from domain.models import Role
from web import services
from web.auth import current_caller, roles_required
from web.db import get_session
from web.schemas import WebhookSecret
from web.validation import AUTH, errors, resource

bp = resource("webhooks", __name__, "/api/v1/webhooks", "The HMAC secret that signs your webhooks")


@bp.get("/secret", responses={200: WebhookSecret, **errors(*AUTH)})
@roles_required(Role.admin, Role.operator)
def secret():
    """The organisation's webhook signing secret (created on first use)"""
    return jsonify({"secret": services.webhook_secret(get_session(), current_caller())})


@bp.post("/secret/rotate", responses={200: WebhookSecret, **errors(*AUTH)})
@roles_required(Role.admin, signed_in=True)
def rotate():
    """Replace the webhook signing secret"""
    return jsonify({"secret": services.rotate_webhook_secret(get_session(), current_caller())})
