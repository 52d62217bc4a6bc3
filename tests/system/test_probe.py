"""The deployments' liveness probe (`python -m stack.probe worker`, stack/probe.py) applies `make
run`'s watchdog rule (stack.run.check_worker) to a real worker, database and broker.

The worker is the webhooks role's command (stack/serve.py: thread pool, no model) named as the job
worker of this host (`worker@%h`): it answers pings but consumes only the webhooks queue, which is
what a job worker whose task consumer stayed stuck after a broker restart looks like from outside.
Its Redis is one of this test's own (nothing else takes the job message), the database is the
session's. Jobs are rows written straight to the database, "queued an hour ago"; the probe runs as
the orchestrator runs it, in a process of its own, with WORKER_STALL_SECONDS short.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from jobqueue import QUEUE_NAME
from stack import serve
from tests.conftest import ROOT, free_port, stored_job
from tests.system.redis_processes import Broker, WorkerProcess, sender, temporary_broker

STALL_SECONDS = 5
PROBE_TIMEOUT = 60


class StuckWorker(WorkerProcess):
    """A worker named worker@<host> that answers pings and takes no job (webhooks queue only)."""

    def __init__(self, broker: Broker):
        env = {**os.environ, "REDIS_URL": broker.url, "DATA_DIR": str(broker.data_dir)}
        command = [*serve.command("webhooks"), "--hostname", "worker@%h"]  # a later option wins
        super().__init__(broker.data_dir / "worker.log", command, env)
        self.ready_at = 0.0


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    with temporary_broker("faceapi-probe-") as running:
        yield running


@pytest.fixture(scope="module")
def stuck_worker(broker: Broker) -> Iterator[StuckWorker]:
    running = StuckWorker(broker)
    try:
        running.wait_for(lambda: " ready." in running.log(), 90, "the worker did not start")
        running.ready_at = time.monotonic()
        yield running
    finally:
        running.stop()


@pytest.fixture()
def waiting_job(services, operator_account, broker: Broker) -> Iterator[uuid.UUID]:
    """A job queued an hour ago whose message waits in the broker's job queue."""
    from domain.db import session_scope
    from domain.jobs import now
    from domain.models import Account, Job

    with session_scope() as session:
        owner = session.execute(select(Account.id).where(Account.email == operator_account[0])).scalar_one()
        job = stored_job(session, owner)
        job.created_at = now() - timedelta(hours=1)
        session.flush()
        job_id = job.id
    sender(broker).send_task("faceapi.recognize", args=[str(job_id)], queue=QUEUE_NAME)
    with broker.client() as client:
        assert client.llen(QUEUE_NAME) >= 1, "the job's message is not in the broker's job queue"
    yield job_id
    with session_scope() as session:
        session.execute(delete(Job).where(Job.owner_id == owner))


def probe(data_dir: Path, redis_url: str, database_url: str | None = None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url or os.environ["DATABASE_URL"],
        "DATA_DIR": str(data_dir),
        "WORKER_STALL_SECONDS": str(STALL_SECONDS),
    }
    return subprocess.run(
        [sys.executable, "-m", "stack.probe", "worker"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT,
    )


def up_longer_than_the_stall(worker: StuckWorker) -> None:
    time.sleep(max(0.0, worker.ready_at + STALL_SECONDS + 1.5 - time.monotonic()))


def test_the_probe_fails_a_worker_that_answers_while_jobs_wait_and_passes_it_once_jobs_start(
    broker, stuck_worker, waiting_job, tmp_path
):
    from domain.db import session_scope
    from domain.jobs import now
    from domain.models import Job, JobStatus

    up_longer_than_the_stall(stuck_worker)
    stalled = probe(tmp_path, broker.url)
    assert stalled.returncode == 1, stalled.stdout + stalled.stderr
    assert "answers but starts no jobs" in stalled.stdout and "WORKER_STALL_SECONDS" in stalled.stdout

    with session_scope() as session:  # a job starts: the queue moves
        job = session.get(Job, waiting_job)
        job.status, job.started_at = JobStatus.running, now()
    flowing = probe(tmp_path, broker.url)
    assert flowing.returncode == 0, flowing.stdout + flowing.stderr
    assert flowing.stdout.strip() == f"worker@{socket.gethostname()} answers"


def test_jobs_that_waited_out_a_database_outage_restart_no_worker(broker, stuck_worker, waiting_job, tmp_path):
    up_longer_than_the_stall(stuck_worker)
    unreachable = f"postgresql://faceapi:unused@127.0.0.1:{free_port()}/faceapi"
    outage = probe(tmp_path, broker.url, database_url=unreachable)
    assert outage.returncode == 0, outage.stdout + outage.stderr
    assert "database or the broker did not answer" in outage.stdout
    # The database is back: for WORKER_STALL_SECONDS the jobs that waited it out do not count...
    after = probe(tmp_path, broker.url)
    assert after.returncode == 0, after.stdout + after.stderr
    # ...which is the state kept in DATA_DIR: a probe that saw no outage finds the stall.
    fresh = probe(tmp_path / "other", broker.url)
    assert fresh.returncode == 1, fresh.stdout + fresh.stderr


def test_the_probe_fails_a_worker_that_does_not_answer_but_not_a_broker_outage(tmp_path):
    empty = Broker(tmp_path / "redis")  # no worker on this one
    try:
        silent = probe(tmp_path, empty.url)
    finally:
        empty.stop()
    assert silent.returncode == 1, silent.stdout + silent.stderr
    assert "did not answer a ping" in silent.stdout
    down = probe(tmp_path, f"redis://127.0.0.1:{free_port()}/0")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "broker does not answer" in down.stdout
