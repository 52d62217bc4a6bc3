"""Fault tests on real processes (bounded in time): a whole stack from `python -m stack.run`,
then a worker killed mid-batch, Redis restarted, PostgreSQL stopped, and a burst of clients."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import requests

from stack.embedded import embedded_redis_url
from tests import images
from tests.conftest import ROOT, STACK_ADMIN, free_port, stack_env, stop_process, wait_until_ready

PASSWORD = STACK_ADMIN[1]


class Stack:
    def __init__(self, data_dir: Path, **overrides: str):
        self.port = free_port()
        self.redis_port = free_port()
        self.data_dir = data_dir
        self.base = f"http://127.0.0.1:{self.port}"
        settings = {
            "EMBEDDED_REDIS_PORT": str(self.redis_port),
            "WEB_WORKERS": "2",
            "WORKER_CONCURRENCY": "2",
            # Messages a worker had reserved when Redis went away come back through the reaper.
            "JOB_REQUEUE_AFTER": "10",
            "JOB_RUNNING_DEADLINE": "20",
            "REAPER_INTERVAL": "5",
            # The supervisor restarts a worker that stops answering pings (see stack/run.py).
            "WORKER_LIVENESS_INTERVAL": "3",
            "WORKER_LIVENESS_FAILURES": "2",
            "WORKER_STALL_SECONDS": "10",
            # Batches enroll one face under many names (copies of one photo): these tests are about
            # delivery, not identity, so only a bit-identical face counts as the same photo.
            "ENROLL_SAME_FACE_SIMILARITY": "1",
        }
        env = stack_env(data_dir, self.port, **{**settings, **overrides})
        # For commands of our own against the stack's Redis (the worker is named as in stack.run).
        self.env = {**env, "REDIS_URL": embedded_redis_url(data_dir, self.redis_port)}
        self.worker_name = f"worker@{socket.gethostname()}"
        self.log = (data_dir / "run.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stack.run"], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.wait_ready()
        token = requests.post(
            f"{self.base}/api/v1/auth/login", json={"email": "root@example.com", "password": PASSWORD}, timeout=10
        ).json()
        self.headers = {"Authorization": f"Bearer {token['access_token']}"}

    def wait_ready(self, timeout: float = 120) -> None:
        wait_until_ready(self.base, self.data_dir / "run.log", process=self.process, timeout=timeout)

    def worker_main(self) -> psutil.Process:
        """The job worker's main process (the supervisor's child, not a pool process, nor the webhook worker)."""
        return next(p for p in self.children("--hostname worker@%h") if p.ppid() == self.process.pid)

    def children(self, needle: str) -> list[psutil.Process]:
        found = []
        for child in psutil.Process(self.process.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):  # a process that ended meanwhile (or a zombie)
                if needle in " ".join(child.cmdline()):
                    found.append(child)
        return found

    def batch(self, count: int) -> str:
        tag = uuid.uuid4().hex[:6]  # fresh persons for every batch
        manifest = [{"file": f"p{i}.jpg", "name": f"Person {i}", "external_id": f"{tag}-{i}"} for i in range(count)]
        photo = images.another_photo(images.tom_hanks(), scale=2.0)
        files = [
            ("images", (f"p{i}.jpg", images.distinct_copy(photo, f"{tag}-{i}"), "image/jpeg")) for i in range(count)
        ]
        response = requests.post(
            f"{self.base}/api/v1/enrollments",
            headers=self.headers,
            files=files,
            data={"consent": "true", "manifest": json.dumps(manifest)},
            timeout=60,
        )
        assert response.status_code == 202, response.text
        return response.json()["batch_id"]

    def wait_batch(self, batch_id: str, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                batch = requests.get(
                    f"{self.base}/api/v1/enrollments/{batch_id}", headers=self.headers, timeout=10
                ).json()
                if batch["status"] in ("succeeded", "partial", "failed"):
                    return batch
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise AssertionError(f"batch {batch_id} did not end; the stack's log ends:\n{self.log_tail()}")

    def log_tail(self, lines: int = 150) -> str:
        """The end of the stack's log, so a failure on CI explains itself."""
        self.log.flush()
        return "\n".join((self.data_dir / "run.log").read_text(errors="replace").splitlines()[-lines:])

    def face_counts(self, batch: dict) -> list[int]:
        return [
            requests.get(f"{self.base}/api/v1/persons/{item['person_id']}", headers=self.headers, timeout=10).json()[
                "face_count"
            ]
            for item in batch["items"]
        ]

    def stop(self) -> None:
        stop_process(self.process, grace=60)


def stop_redis(stack: Stack) -> None:
    redis_server = stack.children("redis-server")[0]
    redis_server.send_signal(signal.SIGTERM)  # flushes its append-only file
    deadline = time.monotonic() + 15
    while redis_server.is_running() and redis_server.status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "redis-server did not stop"
        time.sleep(0.1)


def start_redis(stack: Stack, timeout: float = 60) -> None:
    """Wait for the supervisor to start the stopped Redis again (stack/run.py), same data, same port."""
    import redis

    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError), redis.Redis.from_url(stack.env["REDIS_URL"]) as client:
            if client.ping():
                return
        assert time.monotonic() < deadline, f"redis-server was not restarted:\n{stack.log_tail()}"
        time.sleep(0.2)


@contextlib.contextmanager
def running_stack(prefix: str, **overrides: str) -> Iterator[Stack]:
    """A Stack in a data directory of its own, removed after it stops. Not pytest's tmp_path: its
    base directory is root's alone (0700) at times, and PostgreSQL's own user must reach its data
    directory for pg_ctl."""
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        running = Stack(data_dir, **overrides)
        try:
            yield running
        finally:
            running.stop()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def stack():
    with running_stack("faceapi-faults-") as running:
        yield running


def test_killing_a_worker_process_mid_batch_loses_and_duplicates_nothing(stack):
    batch_id = stack.batch(12)
    time.sleep(1.0)
    pool = [p for p in stack.children("celery") if "worker" in " ".join(p.cmdline())]
    victims = [child for worker in pool for child in worker.children()]  # the prefork pool processes
    assert victims, "no pool process found"
    victims[0].send_signal(signal.SIGKILL)
    batch = stack.wait_batch(batch_id)
    assert (batch["status"], batch["succeeded"]) == ("succeeded", 12), batch
    assert stack.face_counts(batch) == [1] * 12  # every person exactly one face


def test_postgres_outage_gives_503_then_recovers(stack):
    from pgserver._commands import pg_ctl

    from stack.embedded import start_postgres

    pgdata = stack.data_dir / "pg"
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user="pgserver" if os.geteuid() == 0 else None)
    try:
        ready = requests.get(f"{stack.base}/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] == "unreachable"
        submit = requests.post(
            f"{stack.base}/api/v1/recognize",
            headers=stack.headers,
            files={"image": ("t.png", images.tom_hanks(), "image/png")},
            timeout=10,
        )
        assert submit.status_code == 503
        assert submit.json()["error"]["code"] == "database_unavailable"
    finally:
        start_postgres(stack.data_dir)
    stack.wait_ready(60)
    assert stack.wait_batch(stack.batch(2))["status"] == "succeeded"


def test_a_burst_of_300_recognitions_from_16_clients_all_complete(stack):
    photo = images.tom_hanks()

    def one(_: int) -> str:
        session = requests.Session()
        response = session.post(
            f"{stack.base}/api/v1/recognize",
            headers=stack.headers,
            files={"image": ("t.png", photo, "image/png")},
            timeout=60,
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            polled = session.get(f"{stack.base}/api/v1/jobs/{job_id}?wait=20", headers=stack.headers, timeout=30)
            if polled.json()["status"] in ("succeeded", "failed"):
                return polled.json()["status"]
            # A long-poll refused by the per-process or per-organisation cap answers at once with
            # Retry-After (web/waiting.py): a client that polls again at once only adds load.
            time.sleep(float(polled.headers.get("Retry-After", 0)))
        return "timeout"

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(one, range(300)))
    assert outcomes.count("succeeded") == 300, {o: outcomes.count(o) for o in set(outcomes)}


def test_a_crashed_child_is_restarted_and_the_others_keep_running(stack):
    """`kill -9` of Flower used to make `make run` stop gunicorn, the worker, beat and PostgreSQL."""
    flower = stack.children("flower")[0]
    web = stack.children("gunicorn")[0]
    flower.kill()
    deadline = time.monotonic() + 30
    while not [p for p in stack.children("flower") if p.pid != flower.pid] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [p for p in stack.children("flower") if p.pid != flower.pid], "flower was not restarted"
    assert stack.process.poll() is None and web.is_running()  # nothing else stopped
    assert requests.get(f"{stack.base}/readyz", timeout=10).status_code == 200  # the database is up
    assert stack.wait_batch(stack.batch(1))["status"] == "succeeded"


def test_a_worker_that_stops_answering_is_restarted_and_its_batch_completes(stack):
    batch_id = stack.batch(6)
    hung = stack.worker_main()
    hung.send_signal(signal.SIGSTOP)  # alive, but takes and answers nothing: a hung consumer
    batch = stack.wait_batch(batch_id)
    assert (batch["status"], batch["succeeded"]) == ("succeeded", 6), batch
    assert stack.face_counts(batch) == [1] * 6
    assert stack.worker_main().pid != hung.pid
    assert not hung.is_running() or hung.status() == psutil.STATUS_ZOMBIE


def test_a_worker_that_answers_but_takes_no_jobs_is_restarted(stack):
    """The state Celery's consumer can be left in after a broker reconnection: the worker answers
    pings, but consumes nothing. Cancelling its consumer of the job queue gives the same state."""
    from workers.celery_app import QUEUE_NAME

    stuck = stack.worker_main()
    command = ["celery", "-A", "workers.celery_app", "control", "cancel_consumer", QUEUE_NAME]
    subprocess.run([sys.executable, "-m", *command, "-d", stack.worker_name], env=stack.env, check=True, timeout=60)
    batch = stack.wait_batch(stack.batch(3))
    assert (batch["status"], batch["succeeded"]) == ("succeeded", 3), batch
    assert stack.worker_main().pid != stuck.pid
    assert b"answers but starts no jobs" in (stack.data_dir / "run.log").read_bytes()


def test_restarting_redis_mid_batch_loses_nothing(stack):
    batch_id = stack.batch(8)
    stop_redis(stack)
    time.sleep(1.0)
    start_redis(stack)
    batch = stack.wait_batch(batch_id)
    assert (batch["status"], batch["succeeded"]) == ("succeeded", 8), batch
    assert stack.face_counts(batch) == [1] * 8
