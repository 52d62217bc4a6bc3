"""What the code below a Celery task receives from it: the worker app's settings and this process's
engine, built once per worker process in `worker_process_init` (workers/celery_app.py). The tasks
(workers/tasks.py) are the only readers of the app's settings; the pipeline, the deliveries and the
gallery jobs take them as arguments, so a test hands them its own."""

from __future__ import annotations

from dataclasses import dataclass

from celery import Celery

from config import Settings
from workers.engine import FaceEngine, get_face_engine

# The key of the app's conf that holds this process's context (a worker process sets it at start).
CONTEXT_KEY = "faceapi_context"


@dataclass(frozen=True)
class WorkerContext:
    """A job's run's settings and engine (the engine built from those settings)."""

    settings: Settings
    engine: FaceEngine

    @classmethod
    def of(cls, settings: Settings) -> WorkerContext:
        """The context of these settings, with this process's engine of them (built at the first call)."""
        return cls(settings, get_face_engine(settings))


def start_process(app: Celery) -> WorkerContext:
    """Build this worker process's context from the app's settings and keep it on the app."""
    context = WorkerContext.of(app.conf.faceapi_settings)
    app.conf[CONTEXT_KEY] = context
    return context


def process_context(app: Celery) -> WorkerContext:
    """The context a worker process built at start; built here in a process that runs a job task
    itself (not a prefork child), or after the app's settings were swapped (a test's)."""
    context = app.conf.get(CONTEXT_KEY)
    if context is None or context.settings is not app.conf.faceapi_settings:
        context = start_process(app)
    return context
