"""Jobs: poll (or long-poll) the state and result of asynchronous work, list and cancel jobs."""

from __future__ import annotations

import time
import uuid

from flask import Blueprint, jsonify, request
from flask_jwt_extended import jwt_required

from domain.errors import ServiceError
from domain.jobs import job_document
from domain.models import JobStatus, JobType
from domain.notifications import JobEndListener
from web import services
from web.auth import current_account
from web.db import get_session
from web.forms import bad_request, page_limit

bp = Blueprint("jobs", __name__, url_prefix="/api/v1/jobs")
MAX_WAIT_SECONDS = 30
# A long-poll wakes on the job's Redis notice; it also re-reads the row this often in case a
# notice was lost (see domain/notifications.py).
FALLBACK_READ_SECONDS = 1.0


def _wait_seconds() -> float:
    raw = request.args.get("wait")
    if raw is None:
        return 0.0
    try:
        wait = float(raw)
    except ValueError:
        raise bad_request("invalid_field", "wait must be a number of seconds.") from None
    if not 0 <= wait <= MAX_WAIT_SECONDS:
        raise bad_request("invalid_field", f"wait must be between 0 and {MAX_WAIT_SECONDS} seconds.")
    return wait


@bp.get("/<uuid:job_id>")
@jwt_required()
def show(job_id: uuid.UUID):
    """`?wait=N` (N <= 30) answers as soon as the job ends, or after N seconds with its state then."""
    deadline = time.monotonic() + _wait_seconds()
    session = get_session()
    job = services.load_job(session, current_account(), job_id)
    if job.status.finished or time.monotonic() >= deadline:
        return jsonify(job_document(job))
    with JobEndListener(job_id) as listener:
        session.refresh(job)  # subscribed now: an end between the first read and here is seen
        while not job.status.finished and (left := deadline - time.monotonic()) > 0:
            listener.wait(min(left, FALLBACK_READ_SECONDS))
            session.refresh(job)
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
