"""Celery tasks: thin wrappers that take a job id and hand it to the pipeline."""

from __future__ import annotations

import logging
import random
import uuid
from datetime import timedelta

from celery import Task
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from domain import enrollment, gallery_indexes, idempotency, jobs
from domain.db import get_engine, session_scope
from domain.models import JobType
from jobqueue import DELIVER_WEBHOOK, PROCESS_JOB, SYNC_GALLERY_INDEXES, enqueue
from workers.celery_app import celery_app
from workers.pipeline import job_ended
from workers.pipeline import process_job as run_pipeline
from workers.settings import worker_settings
from workers.webhooks import deliver

log = logging.getLogger(__name__)


# A retry waits 1, 2, 4, 8, then 10 s (each between half and all of that, so that jobs spread):
# a job delayed by an outage runs at most about 10 s after the database is back.
RETRY_BACKOFF_MAX_SECONDS = 10.0


def retry_delay(retries: int) -> float:
    ceiling = min(RETRY_BACKOFF_MAX_SECONDS, 2.0**retries)
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def database_answers() -> bool:
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except OperationalError:
        return False


@celery_app.task(bind=True, name=PROCESS_JOB, max_retries=worker_settings().job_max_retries)
def process_job(self: Task, job_id: str) -> None:
    """Run a job. While the database is unreachable the task retries, however long the outage:
    an outage delays jobs by about its length (the job's row says nothing of the retries, and
    the reaper's threshold is minutes). An OperationalError while the database answers (a
    deadlock, a serialization failure) is retried JOB_MAX_RETRIES times, then the job goes back
    to the queue for the reaper's next pass (jobs.mark_message_lost), not left queued silently;
    after jobs.REQUEUE_AFTER_ERRORS_LIMIT such rounds the reaper fails it."""
    try:
        run_pipeline(job_id)
    except OperationalError as error:
        retries = self.request.retries
        if retries < self.max_retries or not database_answers():
            # Past JOB_MAX_RETRIES only while the database is unreachable: the limit moves along.
            limit = None if retries < self.max_retries else retries + 1
            raise self.retry(exc=error, countdown=retry_delay(retries), max_retries=limit) from error
        log.error("job %s: the database kept failing it (%s); the reaper sends it again", job_id, error)
        with session_scope() as session:
            jobs.mark_message_lost(session, uuid.UUID(job_id))


@celery_app.task(name="workers.tasks.reap_jobs")
def reap_jobs() -> dict[str, int]:
    """Send again jobs whose message seems lost (each at most once per JOB_REQUEUE_AFTER, and at
    once those a worker gave up on, up to jobs.REQUEUE_AFTER_ERRORS_LIMIT times: then they fail);
    re-queue once, then fail, jobs past their deadline."""
    settings = worker_settings()
    with session_scope() as session:
        given_up = jobs.fail_given_up(session)
        stranded = jobs.take_stranded(session, jobs.now() - timedelta(seconds=settings.job_requeue_after))
        overdue, timed_out = jobs.reap_overdue(session, jobs.now() - timedelta(seconds=settings.job_running_deadline))
        for job in given_up + timed_out:
            if job.type is JobType.enroll:
                enrollment.discard_failed(session, job)
    # The jobs stay loaded after the commit (domain/db.py: expire_on_commit=False).
    for job in given_up:
        log.error(
            "reaper: job %s failed: a worker gave up on it %d times (database errors while the database answered)",
            job.id,
            jobs.REQUEUE_AFTER_ERRORS_LIMIT + 1,
        )
    for job in given_up + timed_out:  # as for any failure: long-polls, webhook, batch
        job_ended(job.id, job.webhook_url, job.batch_id)
    for job_id in stranded + overdue:
        enqueue(job_id)  # idempotent: a job that runs twice stores or answers the same thing
    if stranded or overdue or timed_out:
        log.warning(
            "reaper: %d stranded jobs sent again, %d overdue re-queued, %d timed out",
            len(stranded),
            len(overdue),
            len(timed_out),
        )
    return {
        "requeued": len(stranded) + len(overdue),
        "stranded": len(stranded),
        "timed_out": len(timed_out),
        "given_up": len(given_up),
    }


@celery_app.task(name="workers.tasks.purge_jobs")
def purge_jobs() -> int:
    """Delete finished jobs older than JOB_RETENTION_DAYS, and Idempotency-Keys older than
    IDEMPOTENCY_KEY_HOURS."""
    settings = worker_settings()
    with session_scope() as session:
        idempotency.purge(session, jobs.now() - timedelta(hours=settings.idempotency_key_hours))
        return jobs.purge_finished(session, jobs.now() - timedelta(days=settings.job_retention_days))


# A build of a large gallery's index takes minutes (about 2 per 100k faces on 2 cores): no job
# time limit, and no retry of a cut-short build (the next run rebuilds an invalid index).
@celery_app.task(name=SYNC_GALLERY_INDEXES, soft_time_limit=None, time_limit=None, acks_late=False)
def sync_gallery_indexes() -> dict[str, int]:
    """Give each large gallery its own HNSW index; drop those no longer needed."""
    settings = worker_settings()
    if settings.gallery_index_min_faces <= 0:
        return {"built": 0, "dropped": 0, "skipped": 1}
    return gallery_indexes.sync(
        get_engine(), min_faces=settings.gallery_index_min_faces, build_memory=settings.gallery_index_build_memory
    )


@celery_app.task(name=DELIVER_WEBHOOK, bind=True, max_retries=None)
def deliver_webhook(self, object_id: str, delivery_id: str, kind: str = "job", organisation_id: str = "") -> None:
    """POST the job (or batch) document to its webhook_url; retried with backoff through Celery's retry."""
    deliver(self, object_id, delivery_id, kind, organisation_id or None)
