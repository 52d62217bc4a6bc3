"""Short database and broker outages heal in about their own length.

A whole stack from `python -m stack.run` with the DEFAULT reaper timing (a job queued 600 s, or
running 600 s, is sent again): the fast reaper of test_faults would hide jobs stranded by an
outage. PostgreSQL is stopped for 10 s, Redis for 6.5 s, while a batch is being processed; every
job must end within the outage plus RECOVERY_SECONDS, exactly once, and the supervisor's watchdog
must not take the outage for a stuck worker (its stall window is short here, so it would). And a
worker killed while it holds messages: its restart hands them back (workers/redelivery.py).
"""

from __future__ import annotations

import os
import re
import time

import pytest

from tests.system.test_faults import Stack, running_stack, start_redis, stop_redis
from workers.reconnect import RECONNECT_INTERVAL_MAX

# After the service is back: the retry back-off's cap (10 s) or the broker reconnection's step (5 s),
# plus the batch's own work on a busy 2-core machine; after Redis also the model load of the pool
# processes that the lost connection cut off (Celery terminates them). Measured in 3 runs each:
# PostgreSQL 4.6-6.7 s, Redis 15.0-21.1 s, a killed worker 21.6-28.7 s (WORKER_START_SECONDS
# included). Without the fixes: ten minutes.
RECOVERY_SECONDS = 30
BATCH_SIZE = 8
# The supervisor's restart of a dead worker (1 s) and the worker's start, models loaded, on 2 busy cores.
WORKER_START_SECONDS = 40
WORKER_RESTARTED = "the worker failed its checks"  # the supervisor's log line (stack/run.py)


@pytest.fixture(scope="module")
def stack():
    with running_stack(
        "faceapi-outages-",
        JOB_REQUEUE_AFTER="600",
        JOB_RUNNING_DEADLINE="600",
        REAPER_INTERVAL="60",
        # A watchdog that looks often and restarts soon: a stranded job would fool it within the test.
        WORKER_LIVENESS_INTERVAL="2",
        WORKER_LIVENESS_FAILURES="2",
        WORKER_STALL_SECONDS="30",
    ) as running:
        yield running


def worker_restarts(stack: Stack) -> int:
    return stack.log_tail(100_000).count(WORKER_RESTARTED)


def stop_postgres(stack: Stack) -> None:
    from pgserver._commands import pg_ctl

    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=stack.data_dir / "pg", user="pgserver" if os.geteuid() == 0 else None)


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
    log = stack.data_dir / "run.log"
    logged = log.stat().st_size
    through_outage(stack, stop_redis, start_redis, 6.5)
    # The consumers retried the connection at most RECONNECT_INTERVAL_MAX s apart (Celery's own
    # steps, 2, 4, 6 ... 30 s, would show 6 s after 6.5 s).
    since = log.read_bytes()[logged:].decode(errors="replace")
    retries = [float(seconds) for seconds in re.findall(r"Trying again in ([\d.]+) seconds?\.\.\. \(\d+/", since)]
    assert retries and max(retries) <= RECONNECT_INTERVAL_MAX, retries


def held_messages(stack: Stack) -> int:
    """Messages workers have taken and not acknowledged (kombu's `unacked` hash in Redis)."""
    import redis

    with redis.Redis.from_url(stack.env["REDIS_URL"]) as client:
        return client.hlen("unacked")


def test_a_worker_killed_holding_messages_hands_them_back_when_it_restarts(stack):
    """kill -9 of the worker (its main process and its pool) while it holds messages, as when it
    crashed with "Unrecoverable error" as the broker connection dropped: they stay in Redis's
    `unacked` hash, for its hour-long visibility timeout. The supervisor restarts the worker, which
    hands them back as it starts: the batch ends within the worker's start plus RECOVERY_SECONDS,
    every item once. Without that: ten minutes (the reaper)."""
    batch_id = stack.batch(BATCH_SIZE)
    deadline = time.monotonic() + 30
    while held_messages(stack) < 2:  # a job running in each pool process, or one and one reserved
        assert time.monotonic() < deadline, "the worker took no messages"
        time.sleep(0.1)
    worker = stack.worker_main()
    for process in [worker, *worker.children(recursive=True)]:
        process.kill()
    killed = time.monotonic()
    batch = stack.wait_batch(batch_id, timeout=WORKER_START_SECONDS + RECOVERY_SECONDS + 30)
    recovered = time.monotonic() - killed
    print(f"batch ended {recovered:.1f} s after the worker was killed")
    assert (batch["status"], batch["succeeded"]) == ("succeeded", BATCH_SIZE), batch
    assert recovered < WORKER_START_SECONDS + RECOVERY_SECONDS, f"{recovered:.1f} s\n{stack.log_tail()}"
    assert stack.face_counts(batch) == [1] * BATCH_SIZE  # every person exactly one face
    assert "held by workers that died" in stack.log_tail(100_000)
