"""Celery tasks: thin wrappers that take a job id and hand it to the pipeline."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.exc import OperationalError

from config import get_settings
from domain import gallery_indexes, idempotency, jobs
from domain.db import get_engine, session_scope
from jobqueue import DELIVER_WEBHOOK, PROCESS_JOB, SYNC_GALLERY_INDEXES, enqueue
from workers.celery_app import celery_app
from workers.pipeline import process_job as run_pipeline
from workers.webhooks import deliver


@celery_app.task(
    name=PROCESS_JOB,
    autoretry_for=(OperationalError,),  # the database was briefly unreachable: try again later
    # 1, 2, 4, 8, 16, then 20 s apart (jittered): ten tries outlast a database restart of a minute
    # or more, so a short outage delays jobs by about its length, not until the reaper's pass.
    retry_backoff=True,
    retry_backoff_max=20,
    retry_jitter=True,
    max_retries=get_settings().job_max_retries,
)
def process_job(job_id: str) -> None:
    run_pipeline(job_id)


@celery_app.task(name="workers.tasks.reap_jobs")
def reap_jobs() -> dict[str, int]:
    """Send again jobs whose message seems lost; re-queue once, then fail, jobs past their deadline."""
    settings = get_settings()
    with session_scope() as session:
        stale = jobs.stale_queued(session, jobs.now() - timedelta(seconds=settings.job_requeue_after))
        overdue, timed_out = jobs.reap_overdue(session, jobs.now() - timedelta(seconds=settings.job_running_deadline))
    for job_id in stale + overdue:
        enqueue(job_id)  # idempotent: a job that runs twice stores or answers the same thing
    return {"requeued": len(stale) + len(overdue), "timed_out": timed_out}


@celery_app.task(name="workers.tasks.purge_jobs")
def purge_jobs() -> int:
    """Delete finished jobs older than JOB_RETENTION_DAYS, and Idempotency-Keys older than
    IDEMPOTENCY_KEY_HOURS."""
    settings = get_settings()
    with session_scope() as session:
        idempotency.purge(session, jobs.now() - timedelta(hours=settings.idempotency_key_hours))
        return jobs.purge_finished(session, jobs.now() - timedelta(days=settings.job_retention_days))


# A build of a large gallery's index takes minutes (about 2 per 100k faces on 2 cores): no job
# time limit, and no retry of a cut-short build (the next run rebuilds an invalid index).
@celery_app.task(name=SYNC_GALLERY_INDEXES, soft_time_limit=None, time_limit=None, acks_late=False)
def sync_gallery_indexes() -> dict[str, int]:
    """Give each large gallery its own HNSW index; drop those no longer needed."""
    settings = get_settings()
    if settings.gallery_index_min_faces <= 0:
        return {"built": 0, "dropped": 0, "skipped": 1}
    return gallery_indexes.sync(
        get_engine(), min_faces=settings.gallery_index_min_faces, build_memory=settings.gallery_index_build_memory
    )


@celery_app.task(name=DELIVER_WEBHOOK, bind=True, max_retries=None)
def deliver_webhook(self, object_id: str, delivery_id: str, kind: str = "job", organisation_id: str = "") -> None:
    """POST the job (or batch) document to its webhook_url; retried with backoff through Celery's retry."""
    deliver(self, object_id, delivery_id, kind, organisation_id or None)
