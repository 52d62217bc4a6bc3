"""A Redis and a worker process of a test's own, for the system tests that kill, stall or restart
them (test_broker_loss.py, test_probe.py)."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import redis
from celery import Celery

from jobqueue import PRIORITY_SEP, PRIORITY_STEPS
from stack.embedded import start_redis
from tests.conftest import ROOT, free_port, stop_process


class Broker:
    """The embedded Redis of a data directory of its own, which a test may kill and start again."""

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


@contextlib.contextmanager
def temporary_broker(prefix: str) -> Iterator[Broker]:
    """A Broker in a temporary data directory, stopped and removed afterwards."""
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    running = Broker(data_dir)
    try:
        yield running
    finally:
        running.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


class WorkerProcess:
    """A worker process started with `command` and `env` in the repository, and its log."""

    def __init__(self, log_path: Path, command: list[str], env: dict[str, str]):
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

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
        stop_process(self.process)


def sender(broker: Broker) -> Celery:
    """A Celery app that sends to `broker`'s lists as the service's (jobqueue.make_app) do."""
    app = Celery("system-test-sender", broker=broker.url)
    app.conf.broker_transport_options = {"priority_steps": list(PRIORITY_STEPS), "sep": PRIORITY_SEP}
    return app
