"""The caller's webhook signing secret."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask_jwt_extended import jwt_required

from domain import audit, webhooks
from web.auth import current_account
from web.db import get_session

bp = Blueprint("webhooks", __name__, url_prefix="/api/v1/webhooks")


@bp.get("/secret")
@jwt_required()
def secret():
    session = get_session()
    value = webhooks.secret_of(session, current_account())
    session.commit()
    return jsonify({"secret": value})


@bp.post("/secret/rotate")
@jwt_required()
def rotate():
    session = get_session()
    value = webhooks.rotate_secret(session, current_account())
    audit.record(session, current_account(), "webhook.rotate_secret", "account", current_account().id)
    session.commit()
    return jsonify({"secret": value})
