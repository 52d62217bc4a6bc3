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
import time
from collections.abc import Iterator

import pytest
import redis

from stack import serve
from tests.system.redis_processes import Broker, WorkerProcess, temporary_broker
from tests.system.redis_processes import sender as redis_sender

QUEUE = "naps"
# broker_loss_app's task, named here rather than imported: importing the worker's Celery app at
# collection would fix this process's settings (and the job queue's broker) before the tests'
# services exist, and every later test of the session would enqueue to an amqp:// default.
NAP = "tests.nap"
LOSSES = 3
NAPS_PER_LOSS = 4  # of serve.WEBHOOK_THREADS (16): the worker holds these and still waits for more
NAP_SECONDS = 3.0  # outlives the loss: each nap ends after Redis is back, or while it is down
DOWN_SECONDS = 1.0


@pytest.fixture
def broker() -> Iterator[Broker]:
    with temporary_broker("faceapi-broker-loss-") as running:
        yield running


class Worker(WorkerProcess):
    """The webhooks role's worker on this test's app and queue."""

    def __init__(self, broker: Broker):
        env = {
            **os.environ,
            "REDIS_URL": broker.url,
            "DATABASE_URL": "postgresql://unused@127.0.0.1:1/unused",  # the naps need no database
            "DATA_DIR": str(broker.data_dir),
        }
        super().__init__(broker.data_dir / "worker.log", _worker_command(), env)


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
    sender = redis_sender(broker)
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
