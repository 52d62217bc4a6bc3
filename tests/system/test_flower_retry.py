"""Flower during a database outage: a job whose run meets the stopped PostgreSQL shows RETRY, then,
PostgreSQL back, SUCCESS under the same id, each item enrolled exactly once."""

from __future__ import annotations

import time

import requests

from tests.conftest import free_port
from tests.system.test_faults import running_stack
from tests.system.test_flower import FLOWER_AUTH, _flower_task, _wait_for_flower_workers
from tests.system.test_outages import stop_postgres

OUTAGE_SECONDS = 8.0
ITEMS = 30


def _retrying(flower: str) -> dict:
    answer = requests.get(f"{flower}/api/tasks", params={"state": "RETRY"}, auth=FLOWER_AUTH, timeout=5)
    return answer.json() if answer.status_code == 200 else {}


def test_a_job_that_meets_a_database_outage_shows_retry_then_success():
    from stack.embedded import start_postgres

    flower_port = free_port()
    with running_stack(
        "faceapi-flower-retry-", FLOWER_PORT=str(flower_port), FLOWER_BASIC_AUTH=":".join(FLOWER_AUTH)
    ) as stack:
        flower = f"http://127.0.0.1:{flower_port}"
        _wait_for_flower_workers(flower)
        # Enough items that some are still queued or running when PostgreSQL stops, even on a quiet
        # machine where an item takes 60 ms (six were all done within the second the test waited).
        batch_id = stack.batch(ITEMS)
        time.sleep(0.3)
        began = time.monotonic()
        stop_postgres(stack)
        retried: dict = {}
        while time.monotonic() - began < OUTAGE_SECONDS:
            retried.update(_retrying(flower))
            time.sleep(0.3)
        start_postgres(stack.data_dir)
        batch = stack.wait_batch(batch_id, timeout=90)

        assert retried, f"no task showed RETRY during the outage\n{stack.log_tail()}"
        assert {task["name"] for task in retried.values()} == {"batch_item"}
        assert (batch["status"], batch["succeeded"]) == ("succeeded", ITEMS), batch
        assert stack.face_counts(batch) == [1] * ITEMS  # exactly once, retries and all
        for job_id in retried:  # the same id ends as SUCCESS
            assert _flower_task(flower, job_id, "SUCCESS", timeout=30)["uuid"] == job_id
