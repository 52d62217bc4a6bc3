"""The reaper and long jobs: a gallery export, import or re-embedding runs past JOB_RUNNING_DEADLINE
on a large gallery; while its progress moves it is alive and left alone, once its progress stops it
is sent again like any job past its deadline."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from domain import jobs
from domain.models import Account, JobStatus, JobType
from tests.conftest import make_account, stored_job


def running_job(db, *, progress_age: float | None):
    owner = db.execute(select(Account).where(Account.email == make_account("operator")[0])).scalar_one()
    job = stored_job(db, owner.id)
    job.type, job.status = JobType.reembed, JobStatus.running
    job.started_at = jobs.now() - timedelta(hours=1)
    if progress_age is not None:
        at = (jobs.now() - timedelta(seconds=progress_age)).timestamp()
        job.progress = {"done": 10, "total": 100, "at": at}
    db.commit()
    return job


def test_a_long_job_whose_progress_moves_is_not_reaped(db):
    alive = running_job(db, progress_age=5)
    stalled = running_job(db, progress_age=3600)
    silent = running_job(db, progress_age=None)
    requeued, failed = jobs.reap_overdue(db, jobs.now() - timedelta(minutes=10))
    db.commit()
    assert alive.id not in requeued
    assert {stalled.id, silent.id} <= set(requeued) and not failed
