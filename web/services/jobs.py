"""Jobs: load one the caller may see, read it again while waiting, list, cancel a queued one, send
its webhook again."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from domain import audit, enrollment, uploads
from domain.callers import Caller
from domain.errors import ServiceError
from domain.jobs import JOBS_TABLE, finish, job_document
from domain.models import Job, JobStatus, JobType
from domain.notifications import announce_job_ended, redis_client
from domain.webhooks import start_delivery
from web.pagination import keyset_page
from web.services.access import one_or_404, visible_to
from web.settings import app_settings


def end_read(session: Session) -> None:
    """End the request's read transaction, so that a request waiting for a job (web/waiting.py)
    holds no database connection, nor an open transaction, while it sleeps: the pool's connections
    stay for requests that work. Whatever the request changed was committed before it waited (a
    submission commits before it enqueues); with nothing pending, ending the transaction changes
    nothing (and expire_on_commit is off: loaded rows stay loaded)."""
    if not (session.new or session.dirty or session.deleted):
        session.commit()


# What a worker, the reaper or a cancellation changes in a job's row while a request waits for it.
CHANGING_COLUMNS = ("status", "started_at", "finished_at", "result", "error", "timings", "progress", "deliveries")


def reread(session: Session, job: Job) -> None:
    """Read again the columns of the job's row that change as it runs, then end that read's
    transaction (end_read). A Core select of those columns, set as the row's loaded state, costs a
    fraction of the ORM's refresh of the whole row (PERFORMANCE.md, section 12)."""
    columns = JOBS_TABLE.c
    row = session.execute(
        select(*(columns[name] for name in CHANGING_COLUMNS)).where(columns.id == job.id)
    ).one_or_none()
    if row is not None:
        for name, value in zip(CHANGING_COLUMNS, row, strict=True):
            set_committed_value(job, name, value)
    end_read(session)


def load_job(session: Session, account: Caller, job_id: uuid.UUID) -> Job:
    query = select(Job).where(Job.id == job_id, visible_to(account, Job))
    return one_or_404(session, query, "job_not_found", "No such job.")


def list_jobs(
    session: Session,
    account: Caller,
    *,
    status: JobStatus | None,
    job_type: JobType | None,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    """The jobs the caller may see, newest first."""
    query = select(Job).where(visible_to(account, Job))
    if status:
        query = query.where(Job.status == status)
    if job_type:
        query = query.where(Job.type == job_type)
    page, next_cursor = keyset_page(
        session, query, (Job.created_at, Job.id), limit=limit, cursor=cursor, descending=True
    )
    return {"items": [job_document(job) for (job,) in page], "next_cursor": next_cursor}


def cancel_job(session: Session, account: Caller, job: Job) -> bool:
    """End a still-queued job; False when a worker already took it (or it ended)."""
    cancelled = finish(
        session, job.id, error=ServiceError("cancelled", "The job was cancelled."), only_from=JobStatus.queued
    )
    if cancelled:
        audit.record(session, account, "job.cancel", "job", job.id)
        if job.type is JobType.enroll:
            enrollment.discard_failed(session, job)
    session.commit()
    if cancelled:
        if uploads.in_redis(job):  # no byte of an ended job's upload is kept
            uploads.drop(redis_client(), job.id)
        announce_job_ended(job.id)
    session.refresh(job)
    return cancelled


def redeliver(session: Session, account: Caller, job: Job) -> str:
    """Send a finished job's webhook again, as a new delivery: refused while another delivery of
    it is under way (409 delivery_in_flight) or its organisation has WEBHOOK_MAX_PENDING (429)."""
    if not job.webhook_url:
        raise ServiceError("no_webhook", "The job was submitted without a webhook_url.", status=409)
    if not job.status.finished:
        raise ServiceError("job_not_finished", "The job has not ended yet.", status=409)
    delivery_id = start_delivery(job.id, organisation_id=job.organisation_id, redeliver=True, settings=app_settings())
    audit.record(session, account, "job.redeliver", "job", job.id, delivery_id=delivery_id)
    session.commit()
    return delivery_id
