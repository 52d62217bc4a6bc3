"""Messages a worker held when it lost Redis go back to the queue as soon as a worker connects.

On Redis, a message a worker has taken but not acknowledged (a job waiting for a pool process,
running, or waiting out a retry's countdown) sits in Redis's `unacked` hash. When the connection
drops, kombu tries to hand such messages back as it closes the channel, but Redis is gone by then,
so they stay in the hash until the transport's visibility_timeout (an hour, kept that long so no
running job is handed to a second worker). Their jobs would wait for the reaper (JOB_REQUEUE_AFTER,
ten minutes). So each time a worker's consumer connects (its first connection, and every one after
a lost connection), before it consumes anything, it hands back every message in the hash that no
live worker holds: it asks the workers, through the broker, which of those tasks they hold
(running, reserved, or waiting for a countdown: Celery's query_task), and restores the others
with kombu's restore_by_tag (a no-op for a tag that is no longer in the hash). That also covers a
worker that died (kill -9) and took its record of what it held with it.

An age threshold cannot tell them apart: a live worker holds the message of a running job for as
long as the job runs (up to JOB_SOFT_TIME_LIMIT), as old as a dead worker's. A worker does not
answer its own question (its event loop waits for this step), so what it held before its
connection dropped is handed back too: Celery cancels such tasks (prefork), or, in the webhooks
worker's thread pool, lets them finish. A live worker that does not answer in time (a stopped
process, or one still reconnecting) gets a duplicate. That is harmless: jobs.claim_with_inputs lets
the later run claim the job and only that run ends it (pipeline.py rolls back the earlier run's
effects), and both acknowledgements remove the one tag from the hash (kombu keeps the tag on
redelivery).

The consumer's connection uses a Redis channel that leaves the messages in the hash, rather than
crashing the worker, when kombu or Celery reach it after its connection was torn down
(_KeepUnackedOnceClosed).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from celery import Celery, bootsteps
from kombu.transport import redis as kombu_redis

from workers.reconnect import PromptlyReconnectingConsumer

log = logging.getLogger(__name__)


class RestoreStrandedMessages(bootsteps.StartStopStep):
    """A consumer step: it starts again after each reconnection, with the new task consumer, before
    the consumer takes any message."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.reconnecting = False

    def start(self, parent: Any) -> None:
        qos = parent.task_consumer.channel.qos
        if hasattr(qos, "restore_by_tag"):  # the Redis transport (others redeliver by themselves)
            # For the log: at a worker's start, what it finds was held by workers that died.
            lost_by = "when the broker connection was lost" if self.reconnecting else "by workers that died"
            hand_back_orphans(parent.app, qos, lost_by)
        self.reconnecting = True


# How long a worker waits for the live workers to say which tasks they hold: the answer comes from
# each one's event loop, which a busy pool does not block (it runs in the main process).
HELD_QUERY_SECONDS = 2.0


def hand_back_orphans(app: Celery, qos: Any, lost_by: str = "by workers that died") -> int:
    """Restore the messages in Redis's `unacked` hash that no live worker holds; returns how many.
    Called before this consumer takes anything, so none of them is held by it."""
    try:
        with qos.channel.conn_or_acquire() as client:
            task_ids = _task_ids_by_tag(client.hgetall(qos.unacked_key))
        if not task_ids:
            return 0
        held = _held_by_live_workers(app, set(task_ids.values()))
        orphans = [tag for tag, task_id in task_ids.items() if task_id not in held]
        for tag in orphans:
            qos.restore_by_tag(tag)
    except Exception:  # the broker went away again: the next connection tries again
        log.warning("could not hand back messages that no worker holds", exc_info=True)
        return 0
    if orphans:
        log.warning("handed back %d message(s) held %s", len(orphans), lost_by)
    return len(orphans)


def _held_by_live_workers(app: Celery, task_ids: set[str]) -> set[str]:
    """Those of `task_ids` that a live worker holds. On a connection of its own: the app's pooled
    ones may be left dead by the Redis restart this worker just reconnected after."""
    with app.connection_for_write() as connection:
        replies = app.control.inspect(timeout=HELD_QUERY_SECONDS, connection=connection).query_task(*task_ids)
    return {task_id for tasks in (replies or {}).values() for task_id in tasks or {}}


def _task_ids_by_tag(unacked: dict[bytes, bytes]) -> dict[str, str]:
    """Delivery tag -> task id of the `unacked` hash's entries (kombu stores [message, exchange,
    routing key] as JSON; Celery's message protocol 2 names the task in its headers)."""
    task_ids = {}
    for tag, entry in unacked.items():
        try:
            task_ids[tag.decode()] = json.loads(entry)[0]["headers"]["id"]
        except (ValueError, LookupError, TypeError, AttributeError):
            log.warning("unacked message %r is no Celery task message; left to the visibility timeout", tag)
    return task_ids


class _KeepUnackedOnceClosed(kombu_redis.Channel):
    """A Redis channel that answers a connection error, not AttributeError, once its connection is
    gone. kombu's channel builds a new Redis client from `transport.client` for each such call,
    and two reach it after Celery tore the connection down:
    - kombu's close of the task channel, as its connection drops, first reads the reply of the
      BRPOP it has pending; with Redis gone that raises a connection error before the channel is
      marked closed. Celery ignores it and closes the connection, which detaches the transport
      (`transport.client = None`) and closes the same channel again: that close restores the
      channel's unacknowledged messages (QoS.restore_unacked);
    - a task that finishes after its channel was closed (the webhooks worker's threads run on
      through a lost connection) acknowledges its message there.
    Both raised AttributeError ('NoneType' object has no attribute 'hostname', or 'client'), which
    Celery does not take for a connection error, so the worker stopped ("Unrecoverable error").
    A connection error is ignored (the close) or logged (the acknowledgement), and the messages
    stay in Redis's `unacked` hash, where RestoreStrandedMessages finds them once a worker
    connects."""

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client is None and getattr(self.connection, "client", None) is None:
            raise redis.ConnectionError("this channel's broker connection is closed")
        with super().conn_or_acquire(client) as acquired:
            yield acquired


class RedeliveringConsumer(PromptlyReconnectingConsumer):
    """Celery's consumer (reconnecting promptly) whose broker connections use _KeepUnackedOnceClosed."""

    def ensure_connected(self, conn: Any) -> Any:
        # Before the connection opens its first channel (the task consumer's, holding the messages).
        # Only the plain Redis transport: Sentinel and other brokers keep their own channels.
        if type(conn.transport) is kombu_redis.Transport:
            conn.transport.Channel = _KeepUnackedOnceClosed
        return super().ensure_connected(conn)
