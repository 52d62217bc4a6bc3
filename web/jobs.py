"""Jobs: poll (or long-poll) the state and result of asynchronous work, list and cancel jobs."""

from __future__ import annotations

import time

from flask import jsonify

from domain.errors import ServiceError
from domain.jobs import job_document
from web import services
from web.auth import current_caller, roles_required
from web.db import get_session
from web.extensions import limiter
from web.ratelimits import redeliver_limit
from web.schemas import Delivery, Job, JobPage, JobPath, JobsQuery, WaitQuery
from web.validation import AUTH, errors, resource, validated
from web.waiting import wait_until_ended

bp = resource("jobs", __name__, "/api/v1/jobs", "Asynchronous work: state, result, cancellation, webhooks")


@bp.get("/<uuid:job_id>", responses={200: Job, **errors(400, 404, *AUTH)})
@roles_required()
@validated
def show(path: JobPath, query: WaitQuery):
    """A job; `?wait=N` (N <= 30) answers as soon as it ends, or after N seconds with its state then"""
    deadline = time.monotonic() + query.wait
    session = get_session()
    job = services.load_job(session, current_caller(), path.job_id)
    wait_until_ended(session, job, deadline)
    return jsonify(job_document(job))


@bp.get("", responses={200: JobPage, **errors(400, *AUTH)})
@roles_required()
@validated
def list_jobs(query: JobsQuery):
    """The caller's jobs (an admin's: everybody's), newest first"""
    page = services.list_jobs(
        get_session(),
        current_caller(),
        status=query.status,
        job_type=query.type,
        limit=query.limit,
        cursor=query.cursor,
    )
    return jsonify(page)


@bp.delete("/<uuid:job_id>", responses={200: Job, **errors(400, 404, 409, *AUTH)})
@roles_required()
@validated
def cancel(path: JobPath):
    """Cancel a job that has not started: it ends `failed` with error code `cancelled`"""
    session = get_session()
    job = services.load_job(session, current_caller(), path.job_id)
    if not services.cancel_job(session, current_caller(), job):
        raise ServiceError("job_not_cancellable", f"The job is already {job.status.value}.", status=409)
    return jsonify(job_document(job))


@bp.post("/<uuid:job_id>/redeliver", responses={202: Delivery, **errors(400, 404, 409, 503, *AUTH)})
@roles_required()
@limiter.limit(redeliver_limit)
@validated
def redeliver(path: JobPath):
    """Send the finished job's webhook again (a new delivery id)

    Refused while a delivery of the job is still under way (409 `delivery_in_flight`) and when the
    organisation has WEBHOOK_MAX_PENDING deliveries under way (429 `too_many_pending_deliveries`).
    """
    session = get_session()
    job = services.load_job(session, current_caller(), path.job_id)
    return jsonify({"delivery_id": services.redeliver(session, current_caller(), job)}), 202
