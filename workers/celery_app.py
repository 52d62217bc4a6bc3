"""The worker's Celery application: jobqueue's app with the worker's options and the tasks. The web
process never imports it (it sends through jobqueue).

Durability choices (see docs/ARCHITECTURE.md, "Jobs are never lost"): messages are acknowledged after
the task finishes (`acks_late`), re-queued when a worker process dies
(`task_reject_on_worker_lost`), and each worker process reserves one message at a time.
"""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, worker_process_init

import jobqueue
from config import Settings, get_settings
from config.logs import redact_emails
from jobqueue import PURGE_JOBS, QUEUE_NAME, REAP_JOBS, SYNC_GALLERY_INDEXES, TEND_UNKNOWNS
from workers.redelivery import RestoreStrandedMessages

log = logging.getLogger(__name__)


def make_celery(app: Celery | None = None, settings: Settings | None = None) -> Celery:
    """The worker's options on `app` (a new one by default): broker, serialization, queues and
    routes come from jobqueue.make_app, which the web process uses to send. `settings` default to
    the process's (read here, at the worker's edge); the app keeps them as `conf.faceapi_settings`."""
    settings = settings or get_settings()
    app = app or jobqueue.make_app(settings)
    app.conf.update(
        include=["workers.tasks"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_send_task_events=settings.celery_task_events,
        broker_connection_retry_on_startup=True,
        # Longer than any job may run, so Redis does not hand a running job to a second worker.
        # (Added to jobqueue's options: the priority steps senders use.)
        broker_transport_options={
            **app.conf.broker_transport_options,
            "visibility_timeout": max(3600, settings.job_soft_time_limit * 4),
        },
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
        # Back on a lost broker connection within 5 s of its return, not 30 (workers/reconnect.py),
        # without crashing as it closes the lost one (workers/redelivery.py).
        worker_consumer="workers.redelivery:RedeliveringConsumer",
        beat_schedule={
            "reap-jobs": {"task": REAP_JOBS, "schedule": settings.reaper_interval},
            "purge-jobs": {"task": PURGE_JOBS, "schedule": 3600.0},
            "tend-unknowns": {"task": TEND_UNKNOWNS, "schedule": settings.unknowns_housekeeping_interval},
            **(
                {"gallery-indexes": {"task": SYNC_GALLERY_INDEXES, "schedule": settings.gallery_index_interval}}
                if settings.gallery_index_min_faces > 0
                else {}
            ),
        },
        task_time_limit=settings.job_soft_time_limit + 30,
        faceapi_settings=settings,
    )
    # What the worker held when Redis went away goes back to the queue as it reconnects, not
    # after the visibility_timeout above (an hour): workers/redelivery.py.
    app.steps["consumer"].add(RestoreStrandedMessages)
    return app


# The process's one app: tasks register on the app that jobqueue.enqueue sends with.
celery_app = make_celery(jobqueue.app())


def runs_jobs(app: Celery | None = None) -> bool:
    """Whether this worker consumes the jobs' queue: a worker started with `-Q webhooks` only
    delivers webhooks and needs no model."""
    return QUEUE_NAME in (app or celery_app).amqp.queues.consume_from


@worker_process_init.connect
def _load_engine_in_child(**_: object) -> None:
    """Build the models once per worker process, after the fork, of the worker app's settings (the
    engine receives them: it reads no settings of its own), and fresh DB connections. The job tasks
    hand this context (settings and engine) to the pipeline (workers/context.py)."""
    from domain.db import dispose_engine
    from workers.context import start_process

    dispose_engine()
    if runs_jobs():
        start_process(celery_app)


@after_setup_logger.connect
@after_setup_task_logger.connect
def _redact_emails(logger: logging.Logger, **_: object) -> None:
    """The worker's and beat's log handlers (Celery's own, set up before the pool forks) drop email
    addresses as the web's do: a task's error may quote one (config/logs.py)."""
    redact_emails(logger)
