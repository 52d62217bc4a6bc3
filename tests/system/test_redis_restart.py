"""`make run`'s supervisor restarts the embedded Redis when it exits (kill -9 here), on its port with
its password and append-only file; the workers reconnect without crashing, and jobs and their
webhooks work afterwards."""

from __future__ import annotations

import time

import psutil
import pytest
import requests

from tests import images
from tests.stack.test_webhooks import Receiver
from tests.system.test_faults import running_stack


@pytest.fixture(scope="module")
def stack():
    with running_stack("faceapi-redis-restart-", WEBHOOK_ALLOWED_HOSTS="127.0.0.1:*") as running:
        yield running


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def _wait_for_new_redis(stack, old_pid: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if [p for p in _alive(stack.children("redis-server")) if p.pid != old_pid]:
            return
        time.sleep(0.2)
    raise AssertionError(f"redis-server was not restarted; the stack's log ends:\n{stack.log_tail()}")


def _recognize_with_webhook(stack, url: str) -> str:
    response = requests.post(
        f"{stack.base}/api/v1/recognize?wait=30",
        headers=stack.headers,
        files={"image": ("face.jpg", images.as_jpeg(images.tom_hanks()), "image/jpeg")},
        data={"webhook_url": url},
        timeout=60,
    )
    assert response.status_code in (200, 202), response.text
    return response.json()["job_id"]


def _job(stack, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = requests.get(f"{stack.base}/api/v1/jobs/{job_id}?wait=10", headers=stack.headers, timeout=30).json()
        if job["status"] in ("succeeded", "failed"):
            return job
    raise AssertionError(f"job {job_id} did not end; the stack's log ends:\n{stack.log_tail()}")


def _exits(log: str) -> str:
    """The supervisor's lines about children that ended or were restarted, and what came before them."""
    lines = log.splitlines()
    marks = [i for i, line in enumerate(lines) if "exited" in line or "restart" in line.lower()]
    return "\n".join("\n".join(lines[max(0, i - 15) : i + 2]) for i in marks[:3]) or log[-3000:]


def test_a_killed_redis_is_restarted_and_jobs_and_webhooks_work_after(stack):
    hook = Receiver([])
    try:
        enrolled = requests.post(
            f"{stack.base}/api/v1/persons?wait=30",
            headers=stack.headers,
            files={"image": ("tom.png", images.tom_hanks(), "image/png")},
            data={"name": "Tom", "consent": "true"},
            timeout=60,
        )
        assert enrolled.status_code in (200, 202), enrolled.text  # the gallery to search
        webhook_workers = _alive(stack.children("webhooks@"))
        redis = _alive(stack.children("redis-server"))[0]
        redis.kill()
        _wait_for_new_redis(stack, redis.pid)

        deadline = time.monotonic() + 60
        while requests.get(f"{stack.base}/readyz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, stack.log_tail()
            time.sleep(0.5)
        # The token issued before the restart still works: the password and the data came back.
        job_id = _recognize_with_webhook(stack, hook.url)
        assert _job(stack, job_id)["status"] == "succeeded"
        hook.wait_for(1)

        # A second loss: the workers reconnect again, nobody crashes (Gossip used to fail on each).
        redis = _alive(stack.children("redis-server"))[0]
        redis.kill()
        _wait_for_new_redis(stack, redis.pid)
        time.sleep(2)
        job_id = _recognize_with_webhook(stack, hook.url)
        assert _job(stack, job_id)["status"] == "succeeded"
        hook.wait_for(2)

        stack.webhook_workers_before = webhook_workers  # for the next test: did any of them survive?
    finally:
        hook.close()


def test_no_worker_crashes_on_a_redis_loss(stack):
    """Runs after the test above, on the same stack: its two Redis losses crashed no worker (a worker
    holding messages used to stop with kombu's AttributeError 'hostname': test_broker_loss.py)."""
    log = (stack.data_dir / "run.log").read_text(errors="replace")
    assert "AttributeError" not in log, _exits(log)
    assert "webhooks exited" not in log and "worker exited" not in log, _exits(log)
    before = getattr(stack, "webhook_workers_before", [])
    assert [p.pid for p in _alive(stack.children("webhooks@"))] == [p.pid for p in before], _exits(log)
