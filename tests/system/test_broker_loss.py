"""A worker keeps running through Redis losses that catch it holding messages, and every message
it held is run and acknowledged after Redis comes back.

A lost connection used to stop a worker ("Unrecoverable error: AttributeError: 'NoneType' object
has no attribute 'hostname'") whenever Redis went away while the worker held unacknowledged
messages and still had room for more (a pending BRPOP): the webhooks worker with a delivery under
way, the job worker with one job on two processes. kombu's close of the task channel then failed
halfway and Celery closed it a second time after the transport was detached from its connection
(workers/redelivery.py, _KeepUnackedOnceClosed). A task that finished while Redis was down crashed
the worker the same way as it acknowledged its message on the closed channel ('client').

The worker here is the webhooks role's command (stack/serve.py: thread pool, no Gossip or Mingle)
on the project's worker app plus a nap task (broker_loss_app.py), against the embedded Redis
(stack/embedded.py: password, append-only file) killed with SIGKILL and started again, on the same
port and data, as the supervisor does (stack/run.py). No PostgreSQL and no model: about 20 s.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from jobqueue import PRIORITY_SEP, PRIORITY_STEPS
from stack import serve
from stack.embedded import start_redis
from tests.conftest import ROOT, free_port
from tests.system.broker_loss_app import NAP

QUEUE = "naps"
LOSSES = 3
NAPS_PER_LOSS = 4  # of serve.WEBHOOK_THREADS (16): the worker holds these and still waits for more
NAP_SECONDS = 3.0  # outlives the loss: each nap ends after Redis is back, or while it is down
DOWN_SECONDS = 1.0


class Broker:
    """The embedded Redis of a data directory of its own, which the test kills and starts again."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.port = free_port()
        self.process, self.url = start_redis(data_dir, self.port)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(15)

    def start(self) -> None:
        self.process, _ = start_redis(self.data_dir, self.port)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(15)


@pytest.fixture
def broker() -> Iterator[Broker]:
    data_dir = Path(tempfile.mkdtemp(prefix="faceapi-broker-loss-"))
    running = Broker(data_dir)
    try:
        yield running
    finally:
        running.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


class Worker:
    """The worker process and its log."""

    def __init__(self, broker: Broker):
        self.log_path = broker.data_dir / "worker.log"
        env = {
            **os.environ,
            "REDIS_URL": broker.url,
            "DATABASE_URL": "postgresql://unused@127.0.0.1:1/unused",  # the naps need no database
            "DATA_DIR": str(broker.data_dir),
        }
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(_worker_command(), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self) -> str:
        return self.log()[-6000:]

    def wait_for(self, condition: Callable[[], bool], timeout: float, problem: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.process.poll() is None, f"the worker stopped; its log ends:\n{self.tail()}"
            assert time.monotonic() < deadline, f"{problem}; the worker's log ends:\n{self.tail()}"
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _worker_command() -> list[str]:
    """The webhooks role's command line on this test's app and queue."""
    command = serve.command("webhooks")
    command[command.index(serve.CELERY_APP)] = "tests.system.broker_loss_app"
    command[command.index(serve.WEBHOOK_QUEUE)] = QUEUE
    return command


@pytest.fixture
def worker(broker: Broker) -> Iterator[Worker]:
    running = Worker(broker)
    try:
        running.wait_for(lambda: " ready." in running.log(), 90, "the worker did not start")
        yield running
    finally:
        running.stop()


def _sender(broker: Broker) -> Celery:
    app = Celery("broker-loss-test", broker=broker.url)
    # The worker's own lists (jobqueue.make_app): one per priority step.
    app.conf.broker_transport_options = {"priority_steps": list(PRIORITY_STEPS), "sep": PRIORITY_SEP}
    return app


def _held(broker: Broker) -> int:
    """Messages taken by a worker and not acknowledged (kombu's `unacked` hash)."""
    try:
        with broker.client() as client:
            return client.hlen("unacked")
    except redis.RedisError:
        return -1


def _queued(broker: Broker) -> int:
    with broker.client() as client:
        return sum(client.llen(name) for name in client.keys(f"{QUEUE}*"))


def test_a_worker_holding_messages_survives_redis_losses_and_runs_them_all(broker, worker):
    sender = _sender(broker)
    sent = []
    for _ in range(LOSSES):
        with sender.connection_for_write() as connection:
            for _ in range(NAPS_PER_LOSS):
                sent.append(sender.send_task(NAP, args=[NAP_SECONDS], queue=QUEUE, connection=connection).id)
        worker.wait_for(lambda: _held(broker) == NAPS_PER_LOSS, 30, "the worker did not take the naps")
        broker.kill()  # the worker holds every nap, running, and waits for more
        time.sleep(DOWN_SECONDS)
        broker.start()
        worker.wait_for(lambda: _held(broker) == 0 and _queued(broker) == 0, 60, "naps left unacknowledged")

    log = worker.log()
    assert "Unrecoverable error" not in log and "AttributeError" not in log, worker.tail()
    assert log.count("Connected to redis://") >= LOSSES + 1  # the same process reconnected each time
    unfinished = [task_id for task_id in sent if f"{NAP}[{task_id}] succeeded" not in log]
    assert not unfinished, worker.tail()
