"""Messages a worker held when it lost Redis go back to the queue as soon as it reconnects.

On Redis, a message a worker has taken but not acknowledged (a job waiting for a pool process,
running, or waiting out a retry's countdown) sits in Redis's `unacked` hash. When the connection
drops, kombu hands such messages back as it closes the channel, but Redis is gone by then, so
that fails and they stay in the hash until the transport's visibility_timeout (an hour, kept that
long so no running job is handed to a second worker). Their jobs would wait for the reaper
(JOB_REQUEUE_AFTER, ten minutes). The lost channel still knows their delivery tags: once the
consumer has a new connection, this step restores them with kombu's own restore_by_tag (a no-op
for a tag that is no longer in the hash), and the worker takes them again.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps

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
