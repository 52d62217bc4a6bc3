"""The worker's settings: those its Celery app was built with (`conf.faceapi_settings`, see
workers/celery_app.make_celery), which the tasks and the code below them read, never the global.
A test, or a second app, swaps `conf.faceapi_settings` and the worker code follows."""

from __future__ import annotations

from config import Settings


def worker_settings() -> Settings:
    """The settings of this process's worker app."""
    # Imported at the first call, not when this module is: building the app builds jobqueue's,
    # which reads REDIS_URL for good (a test process imports the pipeline before its Redis runs).
    from workers.celery_app import celery_app

    return celery_app.conf.faceapi_settings
