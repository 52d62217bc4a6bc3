"""Job-ended notices over Redis pub/sub, so that long-polls wake up at once.

Whoever ends a job (the worker, a cancel, the reaper) announces it after the commit that ends it
(not inside it: an error while publishing must never look like a failed commit): in one round
trip it sets the job's short-lived *ended marker*, then publishes on the job's channel. A long-poll
(`GET /api/v1/jobs/{id}?wait=N`, a submission's `?wait=N`) has read the job once; it subscribes,
and once Redis confirms the subscription it checks the marker (one EXISTS): an end announced
before then left the marker, so only then does it read the row again (a job that ended between
its first read and its subscription is answered at once); an end announced later wakes it. It
then sleeps until a notice or a fallback interval, reading the row each time. A lost notice or
marker (Redis restarted, a publisher died between commit and announce) therefore delays an answer
by at most the fallback interval; it never loses one. Without Redis the wait degrades to plain
polling.
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
ENDED_MARKER_PREFIX = "faceapi:job-ended-marker:"
# A marker only has to outlive the moments between a wait's first read of the job and its
# subscription (milliseconds; seconds for a stalled process). One that expired before a very late
# subscription costs that wait the fallback interval, never its answer.
ENDED_MARKER_SECONDS = 120


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


def ended_marker(job_id: uuid.UUID) -> str:
    return f"{ENDED_MARKER_PREFIX}{job_id}"


def announce_job_ended(job_id: uuid.UUID) -> None:
    """Tell long-polls the job has ended, those subscribed (the notice) and those about to
    subscribe (the marker, set first); best effort (they also re-read the row on a timer)."""
    try:
        with redis_client().pipeline(transaction=False) as pipe:  # one round trip, run in order
            pipe.set(ended_marker(job_id), 1, ex=ENDED_MARKER_SECONDS)
            pipe.publish(channel(job_id), "ended")
            pipe.execute()
    except redis.RedisError as error:
        log.warning("could not announce the end of job %s: %s", job_id, error)


# Each thread keeps its subscriber connection between waits: PubSub.close() drops the connection,
# so a subscriber a wait cost every `?wait` request a TCP connect and its handshake.
_subscribers = threading.local()
# After its SUBSCRIBE and its UNSUBSCRIBE a wait reads up to the confirmation (one round trip), at
# most this long.
CONFIRMATION_SECONDS = 1.0


def _thread_subscriber() -> redis.client.PubSub:
    """This thread's PubSub, subscribed to nothing between waits (a forked child makes its own)."""
    pid, pubsub = getattr(_subscribers, "entry", (None, None))
    if pubsub is None or pid != os.getpid():
        pubsub = redis_client().pubsub()  # with the confirmations: JobEndListener waits for its own
        _subscribers.entry = (os.getpid(), pubsub)
    return pubsub


def _drop_thread_subscriber() -> None:
    """Forget a subscriber whose connection failed or whose state is unknown; the next wait makes one."""
    _, pubsub = getattr(_subscribers, "entry", (None, None))
    _subscribers.entry = (None, None)
    if pubsub is not None:
        with contextlib.suppress(redis.RedisError):
            pubsub.close()


def _read_to_confirmation(pubsub: redis.client.PubSub, kind: str, name: str) -> bool:
    """Read the subscriber's connection up to Redis's `kind` confirmation for channel `name`;
    False when it did not come within CONFIRMATION_SECONDS. Raises redis.RedisError."""
    deadline = time.monotonic() + CONFIRMATION_SECONDS
    while (left := deadline - time.monotonic()) > 0:
        message = pubsub.get_message(timeout=left)
        if message is not None and message["type"] == kind and message["channel"].decode() == name:
            return True
    return False


class JobEndListener:
    """`with JobEndListener(job_id) as listener: listener.wait(seconds)` returns early on a notice;
    `listener.may_have_ended_before_listening()` tells whether the job's end may have come first."""

    def __init__(self, job_id: uuid.UUID):
        self.job_id = job_id
        self.channel = channel(job_id)
        self.pubsub: redis.client.PubSub | None = None
        self.confirmed = False  # Redis confirmed the subscription: every later notice reaches it

    def __enter__(self) -> JobEndListener:
        try:
            pubsub = _thread_subscriber()
            pubsub.subscribe(self.channel)
            self.confirmed = _read_to_confirmation(pubsub, "subscribe", self.channel)
            self.pubsub = pubsub
        except redis.RedisError as error:
            _drop_thread_subscriber()
            log.warning("long-poll without notices (Redis: %s); falling back to polling", error)
        return self

    def may_have_ended_before_listening(self) -> bool:
        """False only when Redis shows no announce of the job's end before its confirmed
        subscription (no marker: a later announce wakes the wait); True otherwise, Redis failing
        included. Announces set the marker before they publish, so none falls between the two."""
        if self.pubsub is None or not self.confirmed:
            return True
        try:
            return bool(redis_client().exists(ended_marker(self.job_id)))
        except redis.RedisError as error:
            log.warning("long-poll cannot check the end marker of job %s (Redis: %s)", self.job_id, error)
            return True

    def wait(self, seconds: float) -> None:
        if self.pubsub is None:
            time.sleep(seconds)
            return
        deadline = time.monotonic() + seconds
        try:
            # get_message may return None early, and a notice of an earlier wait's job may still
            # arrive on this connection: wait out the rest.
            while (left := deadline - time.monotonic()) > 0:
                message = self.pubsub.get_message(timeout=left)
                if message is not None and message["type"] == "message" and message["channel"].decode() == self.channel:
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
            if not _read_to_confirmation(self.pubsub, "unsubscribe", self.channel):
                _drop_thread_subscriber()
        except redis.RedisError:
            _drop_thread_subscriber()
