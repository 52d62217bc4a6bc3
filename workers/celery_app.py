"""The Celery application. The web process imports it only to send task messages.

Durability choices (see README, "Jobs are never lost"): messages are acknowledged after
the task finishes (`acks_late`), re-queued when a worker process dies
(`task_reject_on_worker_lost`), and each worker process reserves one message at a time.
"""

from __future__ import annotations

import logging
import uuid

from celery import Celery
from celery.signals import worker_process_init
from kombu import Queue

from config import get_settings
from workers.queues import DELIVER_WEBHOOK, PROCESS_JOB, QUEUE_NAME, SYNC_GALLERY_INDEXES, WEBHOOK_QUEUE

log = logging.getLogger(__name__)


def make_celery() -> Celery:
    settings = get_settings()
    app = Celery("faceapi", broker=settings.redis_url, include=["workers.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,  # job state lives in PostgreSQL, not in a result backend
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=QUEUE_NAME,
        task_queues=(Queue(QUEUE_NAME), Queue(WEBHOOK_QUEUE)),
        task_routes={DELIVER_WEBHOOK: {"queue": WEBHOOK_QUEUE}},
        task_send_sent_event=settings.celery_task_events,
        worker_send_task_events=settings.celery_task_events,
        broker_connection_retry_on_startup=True,
        # Longer than any job may run, so Redis does not hand a running job to a second worker.
        broker_transport_options={"visibility_timeout": max(3600, settings.job_soft_time_limit * 4)},
        task_soft_time_limit=settings.job_soft_time_limit,
        # A new pool process loads the models before it reports up: give it time on a busy machine.
        worker_proc_alive_timeout=60,
        # The worker's and beat's options live here, not on command lines (stack/serve.py starts
        # them): prefork, one engine per process; beat's schedule file in this instance's DATA_DIR.
        worker_pool="prefork",
        worker_concurrency=settings.worker_concurrency,
        beat_schedule_filename=str(settings.data_dir / "celerybeat-schedule"),
        # Tasks cut off by a lost broker connection are re-queued instead of finishing unacknowledged.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        beat_schedule={
            "reap-jobs": {"task": "workers.tasks.reap_jobs", "schedule": settings.reaper_interval},
            "purge-jobs": {"task": "workers.tasks.purge_jobs", "schedule": 3600.0},
            **(
                {"gallery-indexes": {"task": SYNC_GALLERY_INDEXES, "schedule": settings.gallery_index_interval}}
                if settings.gallery_index_min_faces > 0
                else {}
            ),
        },
        task_time_limit=settings.job_soft_time_limit + 30,
    )
    return app


celery_app = make_celery()


def enqueue(job_id: uuid.UUID) -> None:
    """Send a job's id (never its payload) to the workers."""
    celery_app.send_task(PROCESS_JOB, args=[str(job_id)])


def enqueue_webhook(
    object_id: uuid.UUID, kind: str = "job", organisation_id: uuid.UUID | None = None, *, redeliver: bool = False
) -> str | None:
    """Start a delivery of a finished job's (or batch's) webhook; its id stays the same across
    retries. It counts against its organisation's WEBHOOK_MAX_PENDING until it ends: at the cap a
    delivery is not sent (the refusal is in its delivery log, and None returned), and a
    redelivery is refused (429), as is one while another delivery of it is under way (409)."""
    from domain import webhooks
    from domain.errors import ServiceError

    delivery_id = str(uuid.uuid4())
    if organisation_id is None:
        organisation_id = webhooks.organisation_of(kind, object_id)
    if organisation_id is not None:
        try:
            webhooks.reserve(organisation_id, kind, object_id, delivery_id, exclusive=redeliver)
        except ServiceError as refused:
            if redeliver:
                raise
            webhooks.record_refusal(kind, object_id, refused)
            return None
    try:
        celery_app.send_task(DELIVER_WEBHOOK, args=[str(object_id), delivery_id, kind, str(organisation_id or "")])
    except Exception:
        if organisation_id is not None:
            webhooks.release(organisation_id, kind, object_id, delivery_id)
        raise
    return delivery_id


def runs_jobs(app: Celery | None = None) -> bool:
    """Whether this worker consumes the jobs' queue: a worker started with `-Q webhooks` only
    delivers webhooks and needs no model."""
    return QUEUE_NAME in (app or celery_app).amqp.queues.consume_from


@worker_process_init.connect
def _load_engine_in_child(**_: object) -> None:
    """Build the models once per worker process, after the fork, and fresh DB connections."""
    from domain.db import dispose_engine
    from workers.engine import get_face_engine

    dispose_engine()
    if runs_jobs():
        get_face_engine()
