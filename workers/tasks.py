"""Celery tasks: thin wrappers that take a job id and hand it to the pipeline."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from config import get_settings
from workers.celery_app import PROCESS_JOB, celery_app
from workers.pipeline import process_job as run_pipeline


@celery_app.task(
    name=PROCESS_JOB,
    autoretry_for=(OperationalError,),  # the database was briefly unreachable: try again later
    retry_backoff=True,
    retry_jitter=True,
    max_retries=get_settings().job_max_retries,
)
def process_job(job_id: str) -> None:
    run_pipeline(job_id)
