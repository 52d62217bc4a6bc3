"""Messages a worker held when it lost Redis go back to the queue as soon as it reconnects.

On Redis, a message a worker has taken but not acknowledged (a job waiting for a pool process,
running, or waiting out a retry's countdown) sits in Redis's `unacked` hash. When the connection
drops, kombu hands such messages back as it closes the channel, but Redis is gone by then, so
that fails and they stay in the hash until the transport's visibility_timeout (an hour, kept that
long so no running job is handed to a second worker). Their jobs would wait for the reaper
(JOB_REQUEUE_AFTER, ten minutes). The lost channel still knows their delivery tags: once the
consumer has a new connection, this step restores them with kombu's own restore_by_tag (a no-op
for a tag that is no longer in the hash), and the worker takes them again.

A worker that died (kill -9, or Celery's "Unrecoverable error" as the connection dropped) takes
that record with it. So a worker, as it starts, hands back every message in the hash that no live
worker holds: it asks the workers, through the broker, which of those tasks they hold (running,
reserved, or waiting for a countdown: Celery's query_task), and restores the others. An age
threshold cannot tell them apart: a live worker holds the message of a running job for as long as
the job runs (up to JOB_SOFT_TIME_LIMIT), as old as a dead worker's. A live worker that does not
answer in time (a stopped process) gets a duplicate; that is harmless: jobs.claim_with_inputs lets the later
run claim the job and only that run ends it (pipeline.py rolls back the earlier run's effects),
and both acknowledgements remove the one tag from the hash (kombu keeps the tag on redelivery).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from celery import Celery, bootsteps

log = logging.getLogger(__name__)


class RestoreStrandedMessages(bootsteps.StartStopStep):
    """A consumer step: it starts again after each reconnection, with the new task consumer."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.current: Any = None  # the QoS (delivered, unacknowledged messages) of the live channel
        self.lost: list[Any] = []  # those of channels lost since, with tags not handed back yet

    def start(self, parent: Any) -> None:
        qos = parent.task_consumer.channel.qos
        if not hasattr(qos, "restore_by_tag"):  # not the Redis transport: the broker redelivers
            return
        if self.current is None:  # this worker's first connection: what dead workers held
            hand_back_orphans(parent.app, qos)
        if self.current is not None and self.current is not qos:
            self.lost.append(self.current)
        self.current = qos
        for old in list(self.lost):
            tags = list(old._delivered)  # kombu's record of what the lost channel had taken
            try:
                for tag in tags:
                    qos.restore_by_tag(tag)
                    old._delivered.pop(tag, None)
            except Exception:  # the connection dropped again: the next start tries again
                log.warning("could not yet hand back messages held when the broker connection was lost")
                return
            self.lost.remove(old)
            if tags:
                log.warning("handed back %d message(s) held when the broker connection was lost", len(tags))


# How long a starting worker waits for the live workers to say which tasks they hold: the answer
# comes from each one's event loop, which a busy pool does not block (it runs in the main process).
HELD_QUERY_SECONDS = 2.0


def hand_back_orphans(app: Celery, qos: Any) -> int:
    """Restore the messages in Redis's `unacked` hash that no live worker holds; returns how many.
    Called before this worker consumes anything, so none of them is its own."""
    try:
        with qos.channel.conn_or_acquire() as client:
            task_ids = _task_ids_by_tag(client.hgetall(qos.unacked_key))
        if not task_ids:
            return 0
        replies = app.control.inspect(timeout=HELD_QUERY_SECONDS).query_task(*set(task_ids.values())) or {}
        held = {task_id for tasks in replies.values() for task_id in tasks or {}}
        orphans = [tag for tag, task_id in task_ids.items() if task_id not in held]
        for tag in orphans:
            qos.restore_by_tag(tag)
    except Exception:  # the broker went away again: kombu's visibility timeout stays the fallback
        log.warning("could not hand back messages held by workers that died", exc_info=True)
        return 0
    if orphans:
        log.warning("handed back %d message(s) held by workers that died", len(orphans))
    return len(orphans)


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
