"""Job lifecycle in the database: create, claim, finish, and the JSON document clients poll."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Update, case, delete, exists, func, select, update
from sqlalchemy.orm import Session

from domain.errors import ServiceError
from domain.job_params import EnrollParams, JobParams, params_model, params_of
from domain.models import UNFINISHED, Job, JobStatus, JobType
from jobqueue import job_task

JOBS_TABLE = Job.__table__  # for Core statements on the hot path (see `finish`)


def now() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def create_job(
    session: Session,
    *,
    job_type: JobType,
    owner_id: uuid.UUID,
    organisation_id: uuid.UUID,
    image: bytes,
    params: JobParams,
    gallery_id: uuid.UUID | None = None,
    person_id: uuid.UUID | None = None,
    second_image: bytes | None = None,
    webhook_url: str | None = None,
    cost: int = 1,
    api_key_id: uuid.UUID | None = None,
) -> Job:
    """A queued job holding the uploaded bytes; the caller checks its organisation's budget
    (domain/budget.admit), commits, then enqueues its id. `params` is the job type's model
    (domain/job_params.py)."""
    if type(params) is not params_model(job_type):
        raise TypeError(
            f"a {job_type.value} job's params are {params_model(job_type).__name__}, not {type(params).__name__}"
        )
    job = Job(
        id=uuid.uuid4(),
        type=job_type,
        status=JobStatus.queued,
        owner_id=owner_id,
        organisation_id=organisation_id,
        gallery_id=gallery_id,
        person_id=person_id,
        params=params.stored(),
        input_image=image,
        input_image_2=second_image,
        webhook_url=webhook_url,
        cost=cost,
        api_key_id=api_key_id,
    )
    session.add(job)
    return job


def task_name(job: Job) -> str:
    """The Celery task a job is sent as, named for what it does (jobqueue.job_task)."""
    adds_face = job.type is JobType.enroll and params_of(job, EnrollParams).created_person is False
    return job_task(job.type.value, batch_item=job.batch_id is not None, adds_face=adds_face)


def task_names(session: Session, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """task_name of each of these jobs, in one query (the reaper sends them again)."""
    if not job_ids:
        return {}
    found = session.execute(select(Job).where(Job.id.in_(job_ids))).scalars()
    return {job.id: task_name(job) for job in found}


def ended_failed(session: Session, job_id: uuid.UUID) -> ServiceError | None:
    """The error a job ended with, if it ended failed."""
    error = session.execute(select(Job.error).where(Job.id == job_id, Job.status == JobStatus.failed)).scalar()
    return ServiceError(error.get("code", "failed"), error.get("message", "")) if error else None


def _claiming(job_id: uuid.UUID) -> Update:
    """One UPDATE that marks the job running unless it has finished (the row stays locked until
    the caller commits): claim and load in one round trip."""
    return (
        update(Job)
        # One found `running` was claimed by a worker that died before acknowledging its
        # message; it is run again (every job's effects are idempotent).
        .where(Job.id == job_id, Job.status.in_(UNFINISHED))
        .values(status=JobStatus.running, started_at=now())
        .execution_options(synchronize_session=False)
    )


def claim_with_inputs(session: Session, job_id: uuid.UUID) -> tuple[Job, bytes | None, bytes | None] | None:
    """Mark a job running and return it with its photo and, for a two-photo verification, its
    second photo, in one statement (`UPDATE ... RETURNING`): None when it is unknown or already
    finished, so a second delivery of its message claims nothing. A recognition of several photos
    has them all in its photo, one after another (`split_photos`)."""
    row = session.execute(_claiming(job_id).returning(Job, Job.input_image, Job.input_image_2)).one_or_none()
    return (row[0], row[1], row[2]) if row else None


def joined_photos(photos: list[bytes]) -> tuple[bytes, list[int]]:
    """Several photos as one upload and their sizes (params `photo_sizes`): one bytea moves through
    PostgreSQL at a fraction of the cost of an array of them (PERFORMANCE.md, section 12)."""
    return b"".join(photos), [len(photo) for photo in photos]


def split_photos(data: bytes, sizes: list[int]) -> list[bytes]:
    """The photos `joined_photos` joined, in order."""
    photos, start = [], 0
    for size in sizes:
        photos.append(data[start : start + size])
        start += size
    return photos


def finish(
    session: Session,
    job_id: uuid.UUID,
    *,
    result: dict[str, Any] | None = None,
    error: ServiceError | None = None,
    only_from: JobStatus | None = None,
    timings: dict[str, float] | None = None,
    claimed_at: datetime | None = None,
) -> bool:
    """End a job and drop its raw upload, whatever the outcome. With `only_from`, only a job
    still in that status is ended (one conditional UPDATE, so no race); True if it was.

    With `claimed_at` (the started_at its claim set), only that run ends it: a job claimed again
    since (its worker was cut off and the reaper re-queued it, or a duplicate message reached a
    second worker) belongs to the later run, and this one ends nothing. A job ends exactly once."""
    # The table's columns, not the ORM entity: an ORM-enabled UPDATE spends more CPU on its
    # compile state and session synchronisation than the statement itself (PERFORMANCE.md, section 12).
    jobs = JOBS_TABLE.c
    condition = jobs.id == job_id if only_from is None else (jobs.id == job_id) & (jobs.status == only_from)
    if claimed_at is not None:
        condition &= (jobs.status == JobStatus.running) & (jobs.started_at == claimed_at)
    ended = session.execute(
        update(JOBS_TABLE)
        .where(condition)
        .values(
            status=JobStatus.failed if error else JobStatus.succeeded,
            result=None if error else result,
            error=error.as_dict() if error else None,
            finished_at=now(),
            timings=timings,
            input_image=None,
            input_image_2=None,
        )
    )
    return ended.rowcount == 1


# The reaper keeps its state of a job in the job's own columns (domain/models.Job): when it last
# sent the job again, that a worker gave up on it (its message is known lost: send it at the next
# pass), how many times it was sent again after that, and that it was put back after a timeout.
# A job a worker gave up on (its database errors outlasted JOB_MAX_RETRIES while the database
# answered) is sent again this many times, then fails: an error that persists is no outage, and
# each round costs JOB_MAX_RETRIES tries and a reaper pass (about two minutes), so it ends in minutes.
REQUEUE_AFTER_ERRORS_LIMIT = 3


def take_stranded(session: Session, older_than: datetime) -> list[uuid.UUID]:
    """Queued jobs whose message seems lost, marked as sent again now: those queued since before
    `older_than` and not sent again since then, and those a worker gave up on (message_lost) fewer
    than REQUEUE_AFTER_ERRORS_LIMIT times (see `fail_given_up`). So a job is sent again at most
    once per threshold, not at every pass of the reaper."""
    not_sent_since = Job.requeued_at.is_(None) | (Job.requeued_at < older_than)
    given_up = Job.message_lost
    stranded = (Job.status == JobStatus.queued) & (
        (given_up & (Job.requeues_after_errors < REQUEUE_AFTER_ERRORS_LIMIT))
        | (~given_up & (Job.created_at < older_than) & not_sent_since)
    )
    counted = case((given_up, Job.requeues_after_errors + 1), else_=Job.requeues_after_errors)
    marked = {"message_lost": False, "requeued_at": now(), "requeues_after_errors": counted}
    taken = session.execute(update(Job).where(stranded).values(**marked).returning(Job.id))
    return list(taken.scalars())


def fail_given_up(session: Session) -> list[Job]:
    """Fail the jobs a worker gave up on after they were sent again REQUEUE_AFTER_ERRORS_LIMIT
    times, with `internal_error`; returns them (ended) for the caller to announce once committed."""
    exhausted = session.execute(
        select(Job)
        .where(
            Job.status == JobStatus.queued,
            Job.message_lost,
            Job.requeues_after_errors >= REQUEUE_AFTER_ERRORS_LIMIT,
        )
        .with_for_update(skip_locked=True)
    ).scalars()
    tries = REQUEUE_AFTER_ERRORS_LIMIT + 1
    error = ServiceError(
        "internal_error",
        f"The job kept failing with a database error: it was tried {tries} times "
        f"(sent again {REQUEUE_AFTER_ERRORS_LIMIT} times after its retries ran out).",
    )
    return [job for job in list(exhausted) if finish(session, job.id, error=error, only_from=JobStatus.queued)]


def mark_message_lost(session: Session, job_id: uuid.UUID) -> bool:
    """Put a job a worker gave up on back in the queue, for the reaper's next pass to send again
    (its message is acknowledged: nothing else would run it). False if it had ended meanwhile."""
    marked = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(UNFINISHED))
        .values(
            status=JobStatus.queued,
            started_at=None,
            message_lost=True,
        )
    )
    return marked.rowcount == 1


def queue_stalled(session: Session, since: datetime) -> bool:
    """Jobs have waited in the queue since before `since`, and no job has started since then:
    the workers answer, but take nothing (Celery's consumer can stay stuck after a broker restart)."""
    waiting = exists().where(Job.status == JobStatus.queued, Job.created_at < since)
    started = exists().where(Job.started_at >= since)
    return bool(session.execute(select(waiting & ~started)).scalar_one())


def reap_overdue(session: Session, started_before: datetime) -> tuple[list[uuid.UUID], list[Job]]:
    """Jobs running past the deadline (their worker hung, died, or lost its broker connection):
    each is put back in the queue once, and fails with `timeout` the second time.
    Returns (ids to send again, jobs failed: the caller announces them once committed)."""
    # A job that reported progress since then (a gallery export, import or re-embedding) is alive.
    progressed = func.coalesce(Job.progress["at"].as_float(), 0.0) >= started_before.timestamp()
    overdue = session.execute(
        select(Job)
        .where(Job.status == JobStatus.running, Job.started_at < started_before, ~progressed)
        .with_for_update()
    ).scalars()
    requeue, failed = [], []
    for job in list(overdue):
        if job.requeued_after_timeout:
            finish(session, job.id, error=ServiceError("timeout", "The job did not finish in time."))
            failed.append(job)
        else:
            job.status, job.started_at = JobStatus.queued, None
            job.requeued_after_timeout = True
            requeue.append(job.id)
    return requeue, failed


def purge_finished(session: Session, finished_before: datetime) -> int:
    """Delete finished jobs (and so their results) older than the retention period."""
    result = session.execute(
        delete(Job).where(Job.status.in_([JobStatus.succeeded, JobStatus.failed]), Job.finished_at < finished_before)
    )
    return result.rowcount


def job_document(job: Job) -> dict[str, Any]:
    """The job as clients see it, naming what it concerns: a failed enrollment says whose photo
    (gallery, person, and for a batch item its batch, index and file) failed."""
    params = job.params or {}
    concerns = {
        "gallery": params.get("gallery"),
        "person_id": str(job.person_id) if job.person_id else None,
        **(
            {"batch_id": str(job.batch_id), "index": params.get("index"), "file": params.get("file")}
            if job.batch_id
            else {}
        ),
    }
    return {
        "id": str(job.id),
        "type": job.type.value,
        "status": job.status.value,
        **concerns,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "result": job.result,
        "error": job.error,
        "timings_ms": job.timings,
        **({"progress": job.progress} if job.progress else {}),
        **({"webhook": {"url": job.webhook_url, "deliveries": job.deliveries}} if job.webhook_url else {}),
    }
