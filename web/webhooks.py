"""The caller's webhook signing secret."""

from __future__ import annotations

from flask import jsonify
from flask_jwt_extended import jwt_required

from domain import audit, webhooks
from web.auth import current_account
from web.db import get_session
from web.schemas import WebhookSecret
from web.validation import AUTH, errors, resource

bp = resource("webhooks", __name__, "/api/v1/webhooks", "The HMAC secret that signs your webhooks")


@bp.get("/secret", responses={200: WebhookSecret, **errors(*AUTH)})
@jwt_required()
def secret():
    """The account's webhook signing secret (created on first use)"""
    session = get_session()
    value = webhooks.secret_of(session, current_account())
    session.commit()
    return jsonify({"secret": value})


@bp.post("/secret/rotate", responses={200: WebhookSecret, **errors(*AUTH)})
@jwt_required()
def rotate():
    """Replace the webhook signing secret"""
    session = get_session()
    value = webhooks.rotate_secret(session, current_account())
    audit.record(session, current_account(), "webhook.rotate_secret", "account", current_account().id)
    session.commit()
    return jsonify({"secret": value})
