"""Jobs: poll (or long-poll) the state and result of asynchronous work, list and cancel jobs."""

from __future__ import annotations

import time
import uuid

from flask import Blueprint, jsonify, request
from flask_jwt_extended import jwt_required

from domain.errors import ServiceError
from domain.jobs import job_document
from domain.models import JobStatus, JobType
from web import services
from web.auth import current_account
from web.db import get_session
from web.forms import bad_request, page_limit
from web.waiting import wait_seconds, wait_until_ended

bp = Blueprint("jobs", __name__, url_prefix="/api/v1/jobs")


@bp.get("/<uuid:job_id>")
@jwt_required()
def show(job_id: uuid.UUID):
    """`?wait=N` (N <= 30) answers as soon as the job ends, or after N seconds with its state then."""
    deadline = time.monotonic() + wait_seconds()
    session = get_session()
    job = services.load_job(session, current_account(), job_id)
    wait_until_ended(session, job, deadline)
    return jsonify(job_document(job))


def _enum_arg(name: str, enum: type):
    value = request.args.get(name)
    if value is None:
        return None
    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(member.value for member in enum)
        raise bad_request("invalid_field", f"{name} must be one of {choices}.") from None


@bp.get("")
@jwt_required()
def list_jobs():
    page = services.list_jobs(
        get_session(),
        current_account(),
        status=_enum_arg("status", JobStatus),
        job_type=_enum_arg("type", JobType),
        limit=page_limit(),
        cursor=request.args.get("cursor"),
    )
    return jsonify(page)


@bp.delete("/<uuid:job_id>")
@jwt_required()
def cancel(job_id: uuid.UUID):
    """Cancel a job that has not started: it ends `failed` with error code `cancelled`."""
    session = get_session()
    job = services.load_job(session, current_account(), job_id)
    if not services.cancel_job(session, current_account(), job):
        raise ServiceError("job_not_cancellable", f"The job is already {job.status.value}.", status=409)
    return jsonify(job_document(job))


@bp.post("/<uuid:job_id>/redeliver")
@jwt_required()
def redeliver(job_id: uuid.UUID):
    """Send the finished job's webhook again (a new delivery id)."""
    session = get_session()
    job = services.load_job(session, current_account(), job_id)
    return jsonify({"delivery_id": services.redeliver(session, current_account(), job)}), 202
