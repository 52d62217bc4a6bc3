"""A job ends exactly once, however many runs it gets.

A job can be run twice at once: its worker is cut off and the reaper gives it to another, or a
duplicate message (the reaper re-sends a job that waited long) reaches a second worker while the
first still runs it. Each claim stamps started_at; only the run holding the latest claim ends the
job (jobs.finish's claimed_at), and an earlier run's transaction, its effects included, is rolled
back. tests/system/test_multihost.py shows it across hosts; these show it in one process.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select, update

from domain import jobs
from domain.db import session_scope
from domain.errors import ServiceError
from domain.models import Account, Job, JobStatus
from tests.conftest import make_account, stored_job


def queued_job() -> uuid.UUID:
    email, _ = make_account("operator")
    with session_scope() as session:
        owner = session.execute(select(Account.id).where(Account.email == email)).scalar_one()
        return stored_job(session, owner).id


def claim(job_id: uuid.UUID):
    with session_scope() as session:
        return jobs.claim_with_inputs(session, job_id)[0].started_at


def ending(job_id: uuid.UUID) -> tuple:
    with session_scope() as session:
        job = session.get(Job, job_id)
        return job.status, job.finished_at, job.result, job.error


def test_only_the_latest_claim_ends_the_job(services):
    job_id = queued_job()
    first = claim(job_id)
    second = claim(job_id)  # the job given to another run while the first still runs it
    assert second > first
    with session_scope() as session:
        assert not jobs.finish(session, job_id, result={"run": 1}, claimed_at=first)
    with session_scope() as session:
        assert jobs.finish(session, job_id, result={"run": 2}, claimed_at=second)
    ended = ending(job_id)
    assert ended[0] is JobStatus.succeeded and ended[2] == {"run": 2}
    with session_scope() as session:  # the first run, back late with its failure: nothing changes
        assert not jobs.finish(session, job_id, error=ServiceError("no_face", "x"), claimed_at=first)
        assert not jobs.finish(session, job_id, result={"run": 2}, claimed_at=second)  # and nobody ends it twice
    assert ending(job_id) == ended


def _context_without_model():
    """The settings a run is handed, without an engine: these tests replace the run's model work (`_run`)."""
    from config import get_settings
    from workers.context import WorkerContext

    return WorkerContext(get_settings(), engine=None)


def test_a_run_superseded_while_it_ran_ends_nothing_and_keeps_no_effect(services, monkeypatch):
    """process_job: the job is claimed again while this run computes; its result and whatever its
    transaction wrote are rolled back, no notice, webhook or batch end is sent for it."""
    from workers import pipeline

    job_id = queued_job()
    effects, notices = [], []

    def run_claimed_again_meanwhile(session, job, image, second_image, timer, context):
        claim(job_id)  # another worker's claim, committed while this run holds its transaction
        session.execute(update(Job).where(Job.id == job_id).values(params={"effect": "written by the first run"}))
        effects.append(True)
        return {"faces": []}

    monkeypatch.setattr(pipeline, "_run", run_claimed_again_meanwhile)
    monkeypatch.setattr(pipeline, "announce_job_ended", notices.append)
    pipeline.process_job(str(job_id), _context_without_model())
    assert effects and not notices
    status, finished_at, result, _ = ending(job_id)
    assert (status, finished_at, result) == (JobStatus.running, None, None)  # the later run's to end
    with session_scope() as session:
        assert "effect" not in session.get(Job, job_id).params  # rolled back with the run's transaction


def test_an_unchallenged_run_ends_its_job(services, monkeypatch):
    from workers import pipeline

    job_id = queued_job()
    notices = []
    monkeypatch.setattr(pipeline, "_run", lambda *_: {"faces": []})
    monkeypatch.setattr(pipeline, "announce_job_ended", notices.append)
    pipeline.process_job(str(job_id), _context_without_model())
    assert ending(job_id)[:1] == (JobStatus.succeeded,) and notices == [job_id]
