"""Waiting for a job to end inside a request: `?wait=N` on a job's GET and on every submission."""

from __future__ import annotations

import time
from typing import Any

from flask import Response, g, jsonify, request, url_for
from sqlalchemy.orm import Session

from domain.jobs import job_document
from domain.models import Job
from domain.notifications import JobEndListener
from web.db import get_session
from web.forms import bad_request
from web.logs import request_stage

MAX_WAIT_SECONDS = 30
# A long-poll wakes on the job's Redis notice; it also re-reads the row this often in case a
# notice was lost (see domain/notifications.py).
FALLBACK_READ_SECONDS = 1.0


def wait_seconds() -> float:
    """The `?wait=N` query argument (0 to 30 seconds; 0 when absent)."""
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


def wait_until_ended(session: Session, job: Job, deadline: float) -> None:
    """Return when the job has ended or at the deadline (time.monotonic()), with `job` re-read."""
    if job.status.finished or time.monotonic() >= deadline:
        return
    with JobEndListener(job.id) as listener:
        session.refresh(job)  # subscribed now: an end between the first read and here is seen
        while not job.status.finished and (left := deadline - time.monotonic()) > 0:
            listener.wait(min(left, FALLBACK_READ_SECONDS))
            session.refresh(job)


def location_of(body: dict[str, Any]) -> str | None:
    """Where the client follows a submission: its job, or its batch."""
    if body.get("job_id"):
        return url_for("jobs.show", job_id=body["job_id"])
    if body.get("batch_id"):
        return url_for("enrollments.show", batch_id=body["batch_id"])
    return None


def submitted(body: dict[str, Any]) -> tuple[Response, int]:
    """202 with `body` and a Location header; remembered for an Idempotency-Key (web/idempotency.py)."""
    g.accepted_body = body
    response = jsonify(body)
    if location := location_of(body):
        response.headers["Location"] = location
    return response, 202


def accepted(job: Job, body: dict[str, Any], wait: float) -> tuple[Response, int]:
    """A submission's answer: 202 with `body`; with `?wait=N`, 200 with `body` plus the job
    document as soon as the job ends within N seconds (one request instead of submit + long-poll)."""
    if wait > 0:
        with request_stage("wait"):
            wait_until_ended(get_session(), job, time.monotonic() + wait)
        if job.status.finished:
            g.accepted_body = body
            response = jsonify({**job_document(job), **body})
            response.headers["Location"] = location_of(body)
            return response, 200
    return submitted(body)
