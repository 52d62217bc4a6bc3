"""Short database and broker outages heal in about their own length (issue 17, item 4).

A whole stack from `python -m stack.run` with the DEFAULT reaper timing (a job queued 600 s, or
running 600 s, is sent again): the fast reaper of test_faults would hide jobs stranded by an
outage. PostgreSQL is stopped for 10 s, Redis for 6.5 s, while a batch is being processed; every
job must end within the outage plus RECOVERY_SECONDS, exactly once, and the supervisor's watchdog
must not take the outage for a stuck worker (its stall window is short here, so it would).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from tests.test_faults import Stack

# After the service is back: the retry back-off's cap (10 s) or the broker reconnection's step (a few
# seconds), plus the batch's own work on a busy 2-core machine. Without the fixes: ten minutes.
RECOVERY_SECONDS = 30
BATCH_SIZE = 8
WORKER_RESTARTED = "the worker failed its checks"  # the supervisor's log line (stack/run.py)


@pytest.fixture(scope="module")
def stack():
    # Not pytest's tmp_path: its base directory is root's alone (0700) at times, and PostgreSQL's
    # own user must reach its data directory for pg_ctl.
    data_dir = Path(tempfile.mkdtemp(prefix="faceapi-outages-"))
    running = Stack(
        data_dir,
        JOB_REQUEUE_AFTER="600",
        JOB_RUNNING_DEADLINE="600",
        REAPER_INTERVAL="60",
        # A watchdog that looks often and restarts soon: a stranded job would fool it within the test.
        WORKER_LIVENESS_INTERVAL="2",
        WORKER_LIVENESS_FAILURES="2",
        WORKER_STALL_SECONDS="30",
    )
    yield running
    running.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


def worker_restarts(stack: Stack) -> int:
    return stack.log_tail(100_000).count(WORKER_RESTARTED)


def stop_postgres(stack: Stack) -> None:
    from pgserver._commands import pg_ctl

    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=stack.data_dir / "pg", user="pgserver" if os.geteuid() == 0 else None)


def stop_redis(stack: Stack) -> None:
    redis_server = stack.children("redis-server")[0]
    redis_server.send_signal(signal.SIGTERM)  # flushes its append-only file
    deadline = time.monotonic() + 15
    while redis_server.is_running() and redis_server.status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "redis-server did not stop"
        time.sleep(0.1)


def start_redis(stack: Stack) -> None:
    from stack.embedded import start_redis

    if stack.extra_redis is not None:  # one the tests started before: reap it
        stack.extra_redis.wait(15)
    stack.extra_redis, _ = start_redis(stack.data_dir, stack.redis_port)  # same data, same port


def through_outage(stack: Stack, stop, start, seconds: float) -> None:
    """A batch submitted, the service stopped for `seconds` while it runs, then started again:
    the batch ends within RECOVERY_SECONDS of the restart, every item once, and no worker restart."""
    restarts = worker_restarts(stack)
    batch_id = stack.batch(BATCH_SIZE)
    time.sleep(1.0)  # a job or two under way, the others queued
    began = time.monotonic()
    stop(stack)
    time.sleep(max(0.0, seconds - (time.monotonic() - began)))
    start(stack)
    back = time.monotonic()
    batch = stack.wait_batch(batch_id, timeout=RECOVERY_SECONDS + 30)
    recovered = time.monotonic() - back
    print(f"outage {back - began:.1f} s; batch ended {recovered:.1f} s after the service came back")
    assert (batch["status"], batch["succeeded"]) == ("succeeded", BATCH_SIZE), batch
    assert recovered < RECOVERY_SECONDS, f"{recovered:.1f} s after the outage\n{stack.log_tail()}"
    assert stack.face_counts(batch) == [1] * BATCH_SIZE  # every person exactly one face
    assert worker_restarts(stack) == restarts, stack.log_tail()


def test_a_10_second_postgres_stop_delays_jobs_by_about_its_length(stack):
    from stack.embedded import start_postgres

    through_outage(stack, stop_postgres, lambda running: start_postgres(running.data_dir), 10.0)


def test_a_6_5_second_redis_stop_delays_jobs_by_about_its_length(stack):
    through_outage(stack, stop_redis, start_redis, 6.5)
