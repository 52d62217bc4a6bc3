"""The job queue's interface, the one contract web and workers share: queue and task names, the
Celery app that sends (the broker connection), `enqueue` and `send_webhook`. It only sends: it
imports nothing from domain/, web/ or workers/ (tests/unit/test_layers.py checks it); what may be
sent is decided above it (domain.budget's priorities, domain.webhooks.start_delivery's reservation).

Messages are sent by task NAME (`send_task`), so importing this package imports no task code, no
model and nothing from workers/ (tests/system/test_stack.py checks it). The workers register their task
bodies under these names (workers/tasks.py) and add the worker's own options to the same app
(workers/celery_app.py). The app is built at first use, not at import: a process reads REDIS_URL
when it first sends, not when it happens to import this.
"""

from __future__ import annotations

import uuid
from functools import cache
from typing import TYPE_CHECKING

from config import Settings, get_settings

if TYPE_CHECKING:
    from celery import Celery

# Each job is sent as a task named for what it does, with the job's id as the task's id: Flower
# (and any Celery tool) lists jobs as "recognize", "enroll", ... and finds one by its job id.
RECOGNIZE = "recognize"
ENROLL = "enroll"
ADD_FACE = "add_face"  # an enrollment of another photo of a person who already exists
VERIFY = "verify"
DETECT = "detect"
BATCH_ITEM = "batch_item"  # one photo of a batch enrollment
# A whole gallery's export, import or re-embedding (minutes for a large one: no job time limit).
GALLERY_TASKS = ("export", "import", "reembed")
JOB_TASKS = (RECOGNIZE, ENROLL, ADD_FACE, VERIFY, DETECT, BATCH_ITEM, *GALLERY_TASKS)
# The name jobs were sent under before they had one per type: workers still run such messages.
PROCESS_JOB = "workers.tasks.process_job"
DELIVER_WEBHOOK = "webhook_delivery"  # its task id is the delivery's id (X-FaceAPI-Delivery)
DELIVER_WEBHOOK_BEFORE = "workers.tasks.deliver_webhook"  # the former name, still served
# Periodic upkeep, named as such so that it reads apart from the jobs in Flower.
REAP_JOBS = "housekeeping.reap_jobs"
PURGE_JOBS = "housekeeping.purge_jobs"
SYNC_GALLERY_INDEXES = "housekeeping.sync_gallery_indexes"
TEND_UNKNOWNS = "housekeeping.tend_unknowns"
QUEUE_NAME = "faceapi"
# Webhook deliveries have a queue of their own, so that slow receivers never hold the workers
# that run jobs: `python -m stack.serve webhooks` consumes it alone (threads, no model), the job
# workers run with `--queues faceapi`; a worker started without --queues consumes both.
WEBHOOK_QUEUE = "webhooks"
# The broker's priority lists, 0 first. Which priority a job gets is domain.budget's rule
# (domain.budget.PRIORITY_STEPS: the queue keeps one list for each of them; a unit test checks they
# agree, since neither package imports the other). On Redis each step is a list of its own (kombu's
# `priority_steps`): `faceapi` for 0, then `faceapi\x06\x16<n>`; a worker's BRPOP names them in
# this order, so it takes the lowest non-empty.
PRIORITY_STEPS = tuple(range(10))
PRIORITY_SEP = "\x06\x16"  # kombu's default separator, kept so existing queues and bindings stay valid


def job_queue_lists() -> list[str]:
    """The Redis lists that hold the jobs' queue, one per priority step (its depth is their sum)."""
    return [QUEUE_NAME, *(f"{QUEUE_NAME}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS[1:])]


def make_app(settings: Settings | None = None) -> Celery:
    """A Celery app with what senders and workers share: broker, serialization, queues, routes.
    `settings` default to the process's: its callers are process edges (`app()` below, make_celery)."""
    # Celery is imported here, not above: stack.serve reads the queue names before it execs a
    # role, and importing Celery would add about a second to each start.
    from celery import Celery
    from kombu import Queue

    settings = settings or get_settings()
    app = Celery("faceapi", broker=settings.redis_url)
    app.conf.update(
        task_ignore_result=True,  # job state lives in PostgreSQL, not in a result backend
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=QUEUE_NAME,
        task_queues=(Queue(QUEUE_NAME), Queue(WEBHOOK_QUEUE)),
        task_routes={name: {"queue": WEBHOOK_QUEUE} for name in (DELIVER_WEBHOOK, DELIVER_WEBHOOK_BEFORE)},
        # No `task-sent` event from the web: Flower lists a task from the moment a worker receives it,
        # and what is queued is in /metrics and the jobs API. The event cost the web a publish and
        # Flower an event per job (PERFORMANCE.md, section 11).
        task_send_sent_event=False,
        # Senders and workers must agree on the lists: one per step (see PRIORITY_STEPS).
        broker_transport_options={"priority_steps": list(PRIORITY_STEPS), "sep": PRIORITY_SEP},
    )
    return app


@cache  # two threads racing on the first call may each build one: harmless, one is kept
def app() -> Celery:
    """This process's Celery app; in a worker, workers/celery_app.py adds the worker's options to it."""
    return make_app()


def job_task(job_type: str, *, batch_item: bool = False, adds_face: bool = False) -> str:
    """The task name a job is sent under (domain.jobs.task_name reads these from a job's row)."""
    if batch_item:
        return BATCH_ITEM
    if adds_face:
        return ADD_FACE
    if job_type not in JOB_TASKS:
        raise ValueError(f"no task for job type {job_type!r}")
    return job_type


def enqueue(job_id: uuid.UUID, *, task: str, priority: int | None = None) -> None:
    """Send a job's id (never its payload) to the workers as the task `task` (job_task) whose id is
    the job's; `priority` 0 (the default) is taken first. Sending a job again (the reaper) reuses
    the id: a worker runs a job that has already ended as a no-op (jobs.claim_with_inputs)."""
    try:
        app().send_task(task, args=[str(job_id)], task_id=str(job_id), priority=priority)
    except Exception:  # kombu raises many types for a broker that went away
        # A pooled connection that a broker restart left dead fails the first send after it (a
        # burst right after Redis came back answered 503 queue_unavailable): drop the pool's
        # connections and send once more. A message sent twice is harmless (the claim).
        app().pool.force_close_all()
        app().send_task(task, args=[str(job_id)], task_id=str(job_id), priority=priority)


def send_webhook(object_id: uuid.UUID, delivery_id: str, kind: str, organisation_id: uuid.UUID | None) -> None:
    """Send one webhook delivery (its task id is the delivery's id, the same across its retries).
    What may be sent, and the bookkeeping around it, is domain.webhooks.start_delivery's."""
    app().send_task(
        DELIVER_WEBHOOK, args=[str(object_id), delivery_id, kind, str(organisation_id or "")], task_id=delivery_id
    )
