"""Jobs: poll the state and result of asynchronous work."""

from __future__ import annotations

import uuid

from flask import Blueprint, jsonify
from flask_jwt_extended import jwt_required

from domain.jobs import job_document
from web import services
from web.auth import current_account
from web.db import get_session

bp = Blueprint("jobs", __name__, url_prefix="/api/v1/jobs")


@bp.get("/<uuid:job_id>")
@jwt_required()
def show(job_id: uuid.UUID):
    return jsonify(job_document(services.load_job(get_session(), current_account(), job_id)))
