"""Waiting for a job to end inside a request: `?wait=N` on a job's GET and on every submission.

A wait holds a request thread (not a database connection: it reads the row, then lets the
connection go), so waits are capped: at most
WAIT_MAX_PER_PROCESS in one web process (well below its threads: short requests and probes always
find a free one), of which one organisation may hold at most half (ORGANISATION_SHARE), so that
another organisation always finds waits in every process; and WAIT_MAX_PER_ORGANISATION across
all processes (counted in Redis, so one organisation cannot take every replica's waits). A wait
over a cap neither blocks nor fails: it answers at once with the job as it is, as `wait=0` would,
plus `Retry-After: 1` (poll again).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import redis
from flask import Response, after_this_request, g, jsonify, url_for
from sqlalchemy.orm import Session

from domain.jobs import job_document
from domain.models import Job
from domain.notifications import JobEndListener, redis_client
from web.db import get_session
from web.logs import request_stage
from web.schemas import MAX_WAIT_SECONDS
from web.services import jobs as jobs_service
from web.settings import app_settings

log = logging.getLogger(__name__)

# A long-poll wakes on the job's Redis notice; it also re-reads the row this often in case a
# notice was lost (see domain/notifications.py).
FALLBACK_READ_SECONDS = 1.0
# The most of a process's wait slots one organisation may hold: the rest stay for the others.
ORGANISATION_SHARE = 0.5
# A wait refused by a cap tells the client when to ask again.
RETRY_AFTER_SECONDS = 1
# An organisation's waits: a sorted set of wait ids scored by their deadline (Unix time), so the
# slot of a process killed mid-wait frees itself at that deadline; the key expires when idle.
ORGANISATION_WAITS_KEY = "faceapi:waits:"
# A slot outlives its wait by this much: the answer after the wait is still being written.
SLOT_GRACE_SECONDS = 5


class ProcessWaits:
    """The process's wait slots, of which each organisation may hold at most its share."""

    def __init__(self, limit: int, share: float = ORGANISATION_SHARE):
        self.limit = limit
        self.per_organisation = max(1, int(limit * share))
        self._held: Counter[uuid.UUID] = Counter()
        self._lock = threading.Lock()

    def take(self, organisation_id: uuid.UUID) -> bool:
        with self._lock:
            if self._held.total() >= self.limit or self._held[organisation_id] >= self.per_organisation:
                return False
            self._held[organisation_id] += 1
            return True

    def give_back(self, organisation_id: uuid.UUID) -> None:
        with self._lock:
            self._held[organisation_id] -= 1
            if self._held[organisation_id] <= 0:
                del self._held[organisation_id]


@lru_cache(maxsize=4)
def _process_waits(limit: int) -> ProcessWaits:
    """The process's wait slots (one set per limit, so a changed setting takes effect)."""
    return ProcessWaits(limit)


def take_organisation_slot(organisation_id: uuid.UUID, *, limit: int, seconds: float) -> str | None:
    """A wait slot of the organisation for `seconds` (its id, to release it), or None when it
    already has `limit` waits under way. Raises redis.RedisError."""
    key, slot, now = f"{ORGANISATION_WAITS_KEY}{organisation_id}", uuid.uuid4().hex, time.time()
    with redis_client().pipeline(transaction=True) as pipe:
        pipe.zremrangebyscore(key, "-inf", now)  # slots of waits that ended without releasing them
        pipe.zadd(key, {slot: now + seconds})
        pipe.zcard(key)
        pipe.expire(key, MAX_WAIT_SECONDS + SLOT_GRACE_SECONDS)  # outlives every slot in it
        held = pipe.execute()[2]
    if held <= limit:
        return slot
    release_organisation_slot(organisation_id, slot)
    return None


def release_organisation_slot(organisation_id: uuid.UUID, slot: str) -> None:
    with contextlib.suppress(redis.RedisError):  # an unreleased slot expires at its deadline
        redis_client().zrem(f"{ORGANISATION_WAITS_KEY}{organisation_id}", slot)


@contextlib.contextmanager
def wait_slot(organisation_id: uuid.UUID, seconds: float) -> Iterator[bool]:
    """True when the request may wait `seconds`: under the process's caps (all waits, and the
    organisation's share) and the organisation's across processes. Without Redis only the
    process's caps hold (waits then poll the row, domain/notifications.py)."""
    settings = app_settings()
    process_waits = _process_waits(settings.wait_max_per_process)
    if not process_waits.take(organisation_id):
        yield False
        return
    slot: str | None = None
    try:
        try:
            slot = take_organisation_slot(
                organisation_id, limit=settings.wait_max_per_organisation, seconds=seconds + SLOT_GRACE_SECONDS
            )
            granted = slot is not None
        except redis.RedisError as error:
            log.warning("long-poll without the organisation's cap (Redis: %s)", error)
            granted = True
        yield granted
    finally:
        if slot is not None:
            release_organisation_slot(organisation_id, slot)
        process_waits.give_back(organisation_id)


def ask_to_poll_again() -> None:
    """Answer this request's success with `Retry-After`: its wait was refused, not its request."""

    @after_this_request
    def retry_after(response: Response) -> Response:
        if response.status_code < 300:
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response


def wait_until_ended(session: Session, job: Job, deadline: float) -> None:
    """Return when the job has ended or at the deadline (time.monotonic()), with `job` re-read;
    at once, with `Retry-After` on the answer, when a cap refuses the wait."""
    if job.status.finished or (seconds := deadline - time.monotonic()) <= 0:
        return
    caller = g.get("caller")  # set by roles_required; the job's organisation otherwise
    with wait_slot(caller.organisation_id if caller else job.organisation_id, seconds) as granted:
        if not granted:
            ask_to_poll_again()
            return
        with JobEndListener(job.id) as listener:
            # Subscribed now: an end announced since the first read left its marker, a later one
            # wakes the wait; the row is read again only for the former (one EXISTS, not a read).
            if listener.may_have_ended_before_listening():
                jobs_service.reread(session, job)
            else:
                jobs_service.end_read(session)
            while not job.status.finished and (left := deadline - time.monotonic()) > 0:
                listener.wait(min(left, FALLBACK_READ_SECONDS))
                jobs_service.reread(session, job)


def location_of(body: dict[str, Any]) -> str | None:
    """Where the client follows a submission: its job, or its batch."""
    if body.get("job_id"):
        return url_for("jobs.show", job_id=body["job_id"])
    if body.get("batch_id"):
        return url_for("enrollments.show", batch_id=body["batch_id"])
    return None


def submitted(body: dict[str, Any]) -> tuple[Response, int]:
    """202 with `body` and a Location header; remembered for an Idempotency-Key (web/idempotency.py)."""
    g.accepted_body = body
    response = jsonify(body)
    if location := location_of(body):
        response.headers["Location"] = location
    return response, 202


def accepted(job: Job, body: dict[str, Any], wait: float) -> tuple[Response, int]:
    """A submission's answer: 202 with `body`; with `?wait=N`, 200 with `body` plus the job
    document as soon as the job ends within N seconds (one request instead of submit + long-poll)."""
    if wait > 0:
        with request_stage("wait"):
            wait_until_ended(get_session(), job, time.monotonic() + wait)
        if job.status.finished:
            g.accepted_body = body
            response = jsonify({**job_document(job), **body})
            response.headers["Location"] = location_of(body)
            return response, 200
    return submitted(body)
