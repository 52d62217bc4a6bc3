"""Celery tasks: thin wrappers that take a job id and hand it to the pipeline.

The tasks are the worker's entry points, and the only worker code that reads the app's settings
(`self.app.conf.faceapi_settings`, workers/celery_app.make_celery) and this process's engine
(workers/context.process_context): what runs below them receives both as arguments."""

from __future__ import annotations

import logging
import random
import uuid
from datetime import timedelta

from celery import Task
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from config import Settings
from domain import enrollment, gallery_indexes, idempotency, jobs, portability, unknowns, uploads
from domain.db import get_engine, session_scope
from domain.errors import ServiceError
from domain.models import Gallery, JobType
from jobqueue import (
    ADD_FACE,
    BATCH_ITEM,
    DELIVER_WEBHOOK,
    DELIVER_WEBHOOK_BEFORE,
    DETECT,
    ENROLL,
    PROCESS_JOB,
    PURGE_JOBS,
    REAP_JOBS,
    RECOGNIZE,
    SYNC_GALLERY_INDEXES,
    TEND_UNKNOWNS,
    VERIFY,
    enqueue,
)
from workers.celery_app import celery_app
from workers.context import process_context
from workers.pipeline import job_ended
from workers.pipeline import process_job as run_pipeline
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


def settings_of(task: Task) -> Settings:
    """The settings of the app running `task` (a test may swap them on this process's app)."""
    return task.app.conf.faceapi_settings


def _app_settings() -> Settings:
    """The settings of the app the tasks register on, as they are declared (their retry limits)."""
    return celery_app.conf.faceapi_settings


class JobFailed(Exception):
    """The job ended `failed`; raised once its row is final, so that the task shows FAILURE (with
    the job's error code and message) in Flower. An expected outcome (the task's `throws`): never
    retried, logged without a traceback, and its message acknowledged like any finished task."""

    def __init__(self, error: ServiceError):
        super().__init__(f"{error.code}: {error.message}")
        self.code = error.code


def run_job(task: Task, job_id: str) -> None:
    """What every job task does, whatever its name. While the database is unreachable the task
    retries, however long the outage: an outage delays jobs by about its length (the job's row
    says nothing of the retries, and the reaper's threshold is minutes). An OperationalError while
    the database answers (a deadlock, a serialization failure) is retried JOB_MAX_RETRIES times,
    then the job goes back to the queue for the reaper's next pass (jobs.mark_message_lost), not
    left queued silently; after jobs.REQUEUE_AFTER_ERRORS_LIMIT such rounds the reaper fails it."""
    try:
        failure = run_pipeline(job_id, process_context(task.app))
    except OperationalError as error:
        retries = task.request.retries
        if retries < task.max_retries or not database_answers():
            # Past JOB_MAX_RETRIES only while the database is unreachable: the limit moves along.
            limit = None if retries < task.max_retries else retries + 1
            raise task.retry(exc=error, countdown=retry_delay(retries), max_retries=limit) from error
        log.error("job %s: the database kept failing it (%s); the reaper sends it again", job_id, error)
        with session_scope() as session:
            jobs.mark_message_lost(session, uuid.UUID(job_id))
        return
    if failure is not None:
        raise JobFailed(failure)


def job_task(name: str):
    """A job's task: one name per kind of job (jobqueue.job_task), the same body (run_job)."""
    return celery_app.task(bind=True, name=name, max_retries=_app_settings().job_max_retries, throws=(JobFailed,))


@job_task(RECOGNIZE)
def recognize(self: Task, job_id: str) -> None:
    run_job(self, job_id)


@job_task(ENROLL)
def enroll(self: Task, job_id: str) -> None:
    run_job(self, job_id)


@job_task(ADD_FACE)
def add_face(self: Task, job_id: str) -> None:
    run_job(self, job_id)


@job_task(VERIFY)
def verify(self: Task, job_id: str) -> None:
    run_job(self, job_id)


@job_task(DETECT)
def detect(self: Task, job_id: str) -> None:
    run_job(self, job_id)


@job_task(BATCH_ITEM)
def batch_item(self: Task, job_id: str) -> None:
    run_job(self, job_id)


# A whole gallery's export, import or re-embedding takes minutes for a large one (docs/RECOGNITION.md
# measures it). A task's time limit of None means the worker's JOB_SOFT_TIME_LIMIT, hence a day.
GALLERY_JOB_TIME_LIMIT = 24 * 3600


def gallery_task(name: str):
    """A gallery job's task: its message acknowledged when taken (a worker cut off leaves the job to
    the reaper, which sends it again once its progress stops moving; each resumes or redoes its
    work idempotently)."""
    return celery_app.task(
        bind=True,
        name=name,
        max_retries=_app_settings().job_max_retries,
        throws=(JobFailed,),
        soft_time_limit=GALLERY_JOB_TIME_LIMIT,
        time_limit=GALLERY_JOB_TIME_LIMIT + 60,
        acks_late=False,
    )


@gallery_task("export")
def export(self: Task, job_id: str) -> None:
    run_job(self, job_id)


@gallery_task("import")
def import_(self: Task, job_id: str) -> None:
    run_job(self, job_id)


@gallery_task("reembed")
def reembed(self: Task, job_id: str) -> None:
    run_job(self, job_id)


@job_task(PROCESS_JOB)
def job_sent_under_the_former_name(self: Task, job_id: str) -> None:
    """Jobs sent before each kind had its own name (still queued across an upgrade)."""
    run_job(self, job_id)


# Every minute, and what it does is in the worker's log: it sends no task events, so that Flower
# lists the jobs rather than sixty reaper runs an hour.
@celery_app.task(bind=True, name=REAP_JOBS, send_events=False)
def reap_jobs(self: Task) -> dict[str, int]:
    """Send again jobs whose message seems lost (each at most once per JOB_REQUEUE_AFTER, and at
    once those a worker gave up on, up to jobs.REQUEUE_AFTER_ERRORS_LIMIT times: then they fail);
    re-queue once, then fail, jobs past their deadline."""
    settings = settings_of(self)
    with session_scope() as session:
        given_up = jobs.fail_given_up(session)
        stranded = jobs.take_stranded(session, jobs.now() - timedelta(seconds=settings.job_requeue_after))
        overdue, timed_out = jobs.reap_overdue(session, jobs.now() - timedelta(seconds=settings.job_running_deadline))
        for job in given_up + timed_out:
            if job.type is JobType.enroll:
                enrollment.discard_failed(session, job)
        resend = jobs.task_names(session, stranded + overdue)
    # The jobs stay loaded after the commit (domain/db.py: expire_on_commit=False).
    for job in given_up:
        log.error(
            "reaper: job %s failed: a worker gave up on it %d times (database errors while the database answered)",
            job.id,
            jobs.REQUEUE_AFTER_ERRORS_LIMIT + 1,
        )
    for job in given_up + timed_out:  # as for any failure: long-polls, webhook, batch
        job_ended(job.id, job.webhook_url, job.batch_id, settings=settings, photos_in_redis=uploads.in_redis(job))
    for job_id, task in resend.items():
        enqueue(job_id, task=task)  # idempotent: a job that runs twice stores or answers the same thing
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


@celery_app.task(bind=True, name=PURGE_JOBS)
def purge_jobs(self: Task) -> int:
    """Delete finished jobs older than JOB_RETENTION_DAYS, Idempotency-Keys older than
    IDEMPOTENCY_KEY_HOURS, and gallery exports whose download time is over."""
    settings = settings_of(self)
    with session_scope() as session:
        idempotency.purge(session, jobs.now() - timedelta(hours=settings.idempotency_key_hours))
        portability.purge_expired_exports(session)
        return jobs.purge_finished(session, jobs.now() - timedelta(days=settings.job_retention_days))


@celery_app.task(bind=True, name=TEND_UNKNOWNS)
def tend_unknowns(self: Task) -> dict[str, int]:
    """The recurring-unknowns pools: faces past their gallery's retention are deleted, then each
    pool is re-grouped (domain/unknown_grouping.regroup), one gallery per transaction."""
    settings = settings_of(self)
    with session_scope() as session:
        purged = unknowns.purge_expired(session)
        galleries = session.execute(select(Gallery.id).where(Gallery.unknowns_enabled.is_(True))).scalars().all()
    moved = 0
    for gallery_id in galleries:
        with session_scope() as session:
            gallery = session.get(Gallery, gallery_id)
            if gallery is not None and gallery.unknowns_enabled:
                moved += unknowns.regroup_gallery(session, gallery, settings.unknowns_group_threshold)
    return {"purged": purged, "moved": moved}


# A build of a large gallery's index takes minutes (about 2 per 100k faces on 2 cores, 40 for
# 1M faces with a small maintenance_work_mem): a limit of its own far above the jobs', since None
# would mean the worker's default (JOB_SOFT_TIME_LIMIT), and no retry of a cut-short build (the
# next run rebuilds an invalid index).
INDEX_BUILD_TIME_LIMIT = 6 * 3600


@celery_app.task(
    bind=True,
    name=SYNC_GALLERY_INDEXES,
    soft_time_limit=INDEX_BUILD_TIME_LIMIT,
    time_limit=INDEX_BUILD_TIME_LIMIT + 60,
    acks_late=False,
)
def sync_gallery_indexes(self: Task) -> dict[str, int]:
    """Give each large gallery its own HNSW index; drop those no longer needed."""
    settings = settings_of(self)
    if settings.gallery_index_min_faces <= 0:
        return {"built": 0, "dropped": 0, "skipped": 1}
    return gallery_indexes.sync(
        get_engine(), min_faces=settings.gallery_index_min_faces, build_memory=settings.gallery_index_build_memory
    )


class DeliveryFailed(Exception):
    """The webhook's last attempt failed: the task shows FAILURE in Flower (the attempts are in
    the job's delivery log)."""


def webhook_task(name: str):
    return celery_app.task(name=name, bind=True, max_retries=None, throws=(DeliveryFailed,))


@webhook_task(DELIVER_WEBHOOK)
def deliver_webhook(self, object_id: str, delivery_id: str, kind: str = "job", organisation_id: str = "") -> None:
    """POST the job (or batch) document to its webhook_url; retried with backoff through Celery's
    retry. The task's id is the delivery's."""
    deliver_or_fail(self, object_id, delivery_id, kind, organisation_id)


@webhook_task(DELIVER_WEBHOOK_BEFORE)
def deliver_webhook_sent_before(
    self, object_id: str, delivery_id: str, kind: str = "job", organisation_id: str = ""
) -> None:
    """Deliveries sent under the former task name (still queued across an upgrade)."""
    deliver_or_fail(self, object_id, delivery_id, kind, organisation_id)


def deliver_or_fail(task: Task, object_id: str, delivery_id: str, kind: str, organisation_id: str) -> None:
    try:
        failure = deliver(task, object_id, delivery_id, kind, organisation_id or None, settings=settings_of(task))
    except OperationalError as error:
        # PostgreSQL unreachable (an outage, a restart): the delivery waits for it as jobs do,
        # instead of ending as a failed task with nothing sent. An attempt whose POST went out
        # before the error is sent again, under the same X-FaceAPI-Delivery.
        raise task.retry(exc=error, countdown=retry_delay(task.request.retries)) from error
    if failure is not None:
        raise DeliveryFailed(failure)
