"""Housekeeping that may run long has limits of its own: a task's None limit means the worker's
default (JOB_SOFT_TIME_LIMIT, 120 s), which cut a large gallery's index build short."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_an_index_build_is_not_held_to_a_jobs_time_limit():
    # In a subprocess: importing workers.tasks builds this process's Celery app.
    code = (
        "from workers.celery_app import celery_app\n"
        "from workers.tasks import sync_gallery_indexes as task\n"
        "default = celery_app.conf.task_soft_time_limit\n"
        "assert task.soft_time_limit and task.soft_time_limit >= 3600 > default, (task.soft_time_limit, default)\n"
        "assert task.time_limit and task.time_limit > task.soft_time_limit\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
