"""Job-ended notices over Redis pub/sub, so that long-polls wake up at once.

The worker and a cancel publish on the job's channel after the commit that ends the job (not
inside it: an error while publishing must never look like a failed commit). The reaper does not
publish; its timed-out jobs are seen by the fallback read. A long-poll
(`GET /api/v1/jobs/{id}?wait=N`) subscribes, then reads the job, then sleeps until a notice or a
fallback interval, reading the row again each time. A lost notice (Redis restarted, a publisher
died between commit and publish) therefore delays an answer by at most the fallback interval; it
never loses one. Without Redis the wait degrades to plain polling.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from functools import lru_cache
from types import TracebackType

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from config import get_settings

log = logging.getLogger(__name__)
CHANNEL_PREFIX = "faceapi:job-ended:"


# One quick retry, not redis-py's default three with up to 10 s of backoff: a request that needs
# Redis while it is down answers 503 at once (web/errors.py) instead of holding its thread.
FAIL_FAST = Retry(ExponentialBackoff(cap=0.2, base=0.05), 1)


@lru_cache(maxsize=4)
def _redis_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30, retry=FAIL_FAST
    )


def redis_client() -> redis.Redis:
    """One pooled client per process (forked worker processes get their own through the pid check)."""
    # A process edge, like the client's pool: REDIS_URL of the process's settings.
    return _redis_for(get_settings().redis_url)


def channel(job_id: uuid.UUID) -> str:
    return f"{CHANNEL_PREFIX}{job_id}"


def announce_job_ended(job_id: uuid.UUID) -> None:
    """Tell long-polls the job has ended; best effort (they also re-read the row on a timer)."""
    try:
        redis_client().publish(channel(job_id), "ended")
    except redis.RedisError as error:
        log.warning("could not announce the end of job %s: %s", job_id, error)


# Each thread keeps its subscriber connection between waits: PubSub.close() drops the connection,
# so a subscriber a wait cost every `?wait` request a TCP connect and its handshake.
_subscribers = threading.local()
# After its UNSUBSCRIBE a wait reads up to the confirmation (one round trip), at most this long.
UNSUBSCRIBE_SECONDS = 1.0


def _thread_subscriber() -> redis.client.PubSub:
    """This thread's PubSub, subscribed to nothing between waits (a forked child makes its own)."""
    pid, pubsub = getattr(_subscribers, "entry", (None, None))
    if pubsub is None or pid != os.getpid():
        pubsub = redis_client().pubsub(ignore_subscribe_messages=True)
        _subscribers.entry = (os.getpid(), pubsub)
    return pubsub


def _drop_thread_subscriber() -> None:
    """Forget a subscriber whose connection failed or whose state is unknown; the next wait makes one."""
    _, pubsub = getattr(_subscribers, "entry", (None, None))
    _subscribers.entry = (None, None)
    if pubsub is not None:
        with contextlib.suppress(redis.RedisError):
            pubsub.close()


class JobEndListener:
    """`with JobEndListener(job_id) as listener: listener.wait(seconds)` returns early on a notice."""

    def __init__(self, job_id: uuid.UUID):
        self.job_id = job_id
        self.channel = channel(job_id)
        self.pubsub: redis.client.PubSub | None = None

    def __enter__(self) -> JobEndListener:
        try:
            pubsub = _thread_subscriber()
            pubsub.subscribe(self.channel)
            self.pubsub = pubsub
        except redis.RedisError as error:
            _drop_thread_subscriber()
            log.warning("long-poll without notices (Redis: %s); falling back to polling", error)
        return self

    def wait(self, seconds: float) -> None:
        if self.pubsub is None:
            time.sleep(seconds)
            return
        deadline = time.monotonic() + seconds
        try:
            # get_message may return None early (e.g. on the subscribe confirmation), and a notice
            # of an earlier wait's job may still arrive on this connection: wait out the rest.
            while (left := deadline - time.monotonic()) > 0:
                message = self.pubsub.get_message(timeout=left)
                if message is not None and message["channel"].decode() == self.channel:
                    return
        except redis.RedisError:
            _drop_thread_subscriber()
            self.pubsub = None
            time.sleep(max(0.0, deadline - time.monotonic()))

    def __exit__(self, kind: type | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self.pubsub is None:
            return
        try:
            self.pubsub.unsubscribe(self.channel)
            # Read up to the confirmation: the connection is then idle, subscribed to nothing.
            deadline = time.monotonic() + UNSUBSCRIBE_SECONDS
            while self.pubsub.subscribed and (left := deadline - time.monotonic()) > 0:
                self.pubsub.get_message(timeout=left)
            if self.pubsub.subscribed:
                _drop_thread_subscriber()
        except redis.RedisError:
            _drop_thread_subscriber()
