"""The periodic tasks: lost messages are sent again, hung jobs time out, old jobs are purged."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

from sqlalchemy import select, update

from domain.db import session_scope
from domain.jobs import now
from domain.models import Job, JobStatus
from tests import images
from tests.conftest import stored_job, wait_for_job
from tests.stack.test_webhooks import Receiver


def reap_jobs():
    from workers.tasks import reap_jobs as task  # the Celery app reads REDIS_URL when imported

    return task()


def purge_jobs():
    from workers.tasks import purge_jobs as task

    return task()


def _job(client, headers, **values) -> str:
    """A recognize job written straight to the database, as if its message had been lost."""
    me = client.get("/api/v1/auth/me", headers=headers).get_json()
    with session_scope() as session:
        params = {"threshold": 0.35, "top_k": 5, "max_faces": 20}
        job = stored_job(session, uuid.UUID(me["id"]), image=images.group_photo(), params=params)
        session.flush()
        session.execute(update(Job).where(Job.id == job.id).values(**values))
        return str(job.id)


def test_a_job_whose_message_was_lost_is_sent_again(client, operator_headers, worker):
    job_id = _job(client, operator_headers, created_at=now() - timedelta(hours=1))
    assert reap_jobs()["requeued"] >= 1
    job = wait_for_job(client, operator_headers, job_id)
    assert job["status"] == "succeeded"
    assert len(job["result"]["faces"]) == 6


def test_a_job_running_past_its_deadline_is_retried_once(client, operator_headers, worker):
    job_id = _job(client, operator_headers, status=JobStatus.running, started_at=now() - timedelta(hours=2))
    assert reap_jobs()["requeued"] >= 1
    assert wait_for_job(client, operator_headers, job_id)["status"] == "succeeded"


def test_a_job_overdue_twice_fails_with_timeout_and_its_webhook_fires(client, operator_headers, worker):
    hook = Receiver([])
    try:
        job_id = _job(
            client,
            operator_headers,
            status=JobStatus.running,
            started_at=now() - timedelta(hours=2),
            requeued_after_timeout=True,
            webhook_url=hook.url,
        )
        assert reap_jobs()["timed_out"] >= 1
        job = client.get(f"/api/v1/jobs/{job_id}", headers=operator_headers).get_json()
        assert (job["status"], job["error"]["code"]) == ("failed", "timeout")
        hook.wait_for(1)  # as for any failure (the reaper sent none before)
        assert json.loads(hook.requests[0][1])["error"]["code"] == "timeout"
    finally:
        hook.close()


def test_finished_jobs_are_purged_after_the_retention(client, operator_headers, db):
    old = _job(client, operator_headers, status=JobStatus.succeeded, result={}, finished_at=now() - timedelta(days=8))
    recent = _job(client, operator_headers, status=JobStatus.succeeded, result={}, finished_at=now())
    assert purge_jobs() >= 1
    remaining = set(db.execute(select(Job.id).where(Job.id.in_([uuid.UUID(old), uuid.UUID(recent)]))).scalars())
    assert remaining == {uuid.UUID(recent)}


def test_a_queue_is_stalled_while_jobs_wait_and_none_starts(db, operator_headers, client):
    """What the `make run` watchdog asks the database (see stack.run.WorkerWatchdog). Times are set
    in the future so that other tests' jobs in the shared database cannot change the answer."""
    from domain.jobs import queue_stalled

    me = client.get("/api/v1/auth/me", headers=operator_headers).get_json()
    later = now() + timedelta(days=100)
    stored_job(db, uuid.UUID(me["id"]))  # queued now, so waiting since before `later`
    db.flush()
    assert queue_stalled(db, since=later)
    started = stored_job(db, uuid.UUID(me["id"]))
    started.status, started.started_at = JobStatus.running, later + timedelta(seconds=1)
    db.flush()
    assert not queue_stalled(db, since=later)  # a job started since: the workers take jobs


def test_a_stranded_job_is_sent_again_once_per_threshold_not_at_every_pass(client, operator_headers):
    from domain import jobs

    job_id = uuid.UUID(_job(client, operator_headers, created_at=now() - timedelta(hours=1)))
    threshold = now() - timedelta(minutes=10)
    with session_scope() as session:
        first = jobs.take_stranded(session, threshold)
    with session_scope() as session:
        second = jobs.take_stranded(session, threshold)  # the reaper's next pass, right after
    assert job_id in first and job_id not in second
    with session_scope() as session:  # a threshold after it was sent again, it is sent again
        assert job_id in jobs.take_stranded(session, now() + timedelta(seconds=1))


def test_a_job_a_worker_gave_up_on_is_sent_again_at_the_next_pass(client, operator_headers):
    """A job whose task ran out of retries while the database answered: back in the queue, and
    sent again at the reaper's next pass although it is young, then not at the pass after."""
    from domain import jobs

    job_id = uuid.UUID(_job(client, operator_headers, status=JobStatus.running, started_at=now()))
    with session_scope() as session:
        assert jobs.mark_message_lost(session, job_id)
    threshold = now() - timedelta(minutes=10)
    with session_scope() as session:
        assert job_id in jobs.take_stranded(session, threshold)
    with session_scope() as session:
        assert job_id not in jobs.take_stranded(session, threshold)
        job = session.get(Job, job_id)
        assert (job.status, job.started_at, job.message_lost) == (JobStatus.queued, None, False)


def test_a_job_workers_keep_giving_up_on_fails_after_the_limit_and_its_webhook_fires(client, operator_headers, worker):
    """A database error that persists while the database answers: each time a worker gives up
    the reaper sends the job again, REQUEUE_AFTER_ERRORS_LIMIT times, then fails it (not forever),
    and its webhook reports the failure as for any other."""
    hook = Receiver([])
    try:
        _fail_after_the_limit(client, operator_headers, hook)
    finally:
        hook.close()


def _fail_after_the_limit(client, headers, hook: Receiver) -> None:
    from domain import jobs

    job_id = uuid.UUID(_job(client, headers, webhook_url=hook.url))
    threshold = now() - timedelta(minutes=10)
    for _ in range(jobs.REQUEUE_AFTER_ERRORS_LIMIT):
        with session_scope() as session:
            assert jobs.mark_message_lost(session, job_id)
        with session_scope() as session:
            assert job_id in jobs.take_stranded(session, threshold)  # sent again (not enqueued here)
    with session_scope() as session:
        assert jobs.mark_message_lost(session, job_id)  # given up once more: the limit is reached
    with session_scope() as session:
        assert job_id not in jobs.take_stranded(session, threshold)
        assert session.get(Job, job_id).requeues_after_errors == jobs.REQUEUE_AFTER_ERRORS_LIMIT
    assert reap_jobs()["given_up"] >= 1
    job = client.get(f"/api/v1/jobs/{job_id}", headers=headers).get_json()
    assert (job["status"], job["error"]["code"]) == ("failed", "internal_error")
    assert f"tried {jobs.REQUEUE_AFTER_ERRORS_LIMIT + 1} times" in job["error"]["message"]
    hook.wait_for(1)
    delivery_headers, body = hook.requests[0]
    assert delivery_headers["X-FaceAPI-Event"] == "job.failed"
    assert json.loads(body)["error"]["code"] == "internal_error"
