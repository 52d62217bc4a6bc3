"""The worker app of test_broker_loss.py: the project's worker app (workers/celery_app.py: its
consumer, bootsteps and options) with one more task, a nap that holds its message unacknowledged
while it sleeps. Imported only by that test's worker process, whose environment names its Redis."""

from __future__ import annotations

import time

from workers.celery_app import celery_app

NAP = "tests.nap"  # test_broker_loss.NAP: that module does not import this one (the comment there says why)


@celery_app.task(name=NAP)
def nap(seconds: float) -> None:
    time.sleep(seconds)
