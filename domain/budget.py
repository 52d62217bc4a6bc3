"""Each organisation's job budget and its place in the queue.

A job costs more the more pixels it sends (`job_cost`). Every submission route adds up, in the
transaction that creates its jobs, the cost of the organisation's queued and running jobs under a
lock of the organisation's row, and is refused whole (429 `job_budget_exceeded`) when the new jobs
would take it past ORG_MAX_PENDING_COST. The same sum orders the queue: a job is sent with a Celery
priority that falls as its organisation's outstanding cost grows (`queue_priority`), so one
organisation's backlog does not hold up another's single job (docs/API.md, "Job budget and fair queueing")."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence

from sqlalchemy import BigInteger, func, select
from sqlalchemy.orm import Session

from domain.errors import ServiceError
from domain.images import ImageInfo

# One cost unit per started 6 megapixels. Worker time (decode + detect + embed, one process,
# PERFORMANCE.md section 8 and this change's measurement): an LFW crop 42-76 ms, a 12 MP phone
# photo 131-296 ms (cost 3), 20 MP 118-238 ms (4), 32.6 MP 177-441 ms (6), 36 MP 221-406 ms (7).
PIXELS_PER_COST_UNIT = 6_000_000
# A progressive JPEG's scans are each a pass over the whole image: 10 of them cost about one more
# decode of its pixels (a 36 MP photo: 0.36 s for libjpeg's 10 scans, 2.9 s for 50 scans full of
# data), so its pixels count 1 + scans / SCANS_PER_PASS times.
SCANS_PER_PASS = 10
# How long a worker process takes for one cost unit, about: the Retry-After of a refusal.
SECONDS_PER_COST_UNIT = 0.1
MAX_RETRY_AFTER_SECONDS = 60
# The priorities a job is sent with, 0 served first. The broker keeps one list per step
# (jobqueue.PRIORITY_STEPS lays them out; tests/unit/test_layers.py checks the two agree).
PRIORITY_STEPS = tuple(range(10))


def image_cost(image: ImageInfo) -> int:
    """Cost units of one photo, from the size and scans its upload validation read
    (domain.images.validate_image): the bytes are not opened again. The decode work is its pixels
    times its passes over them; a baseline JPEG, a PNG or a WebP makes one."""
    passes = 1 + image.scans / SCANS_PER_PASS if image.scans > 1 else 1
    return max(1, math.ceil(image.width * image.height * passes / PIXELS_PER_COST_UNIT))


def job_cost(image: ImageInfo, second_image: ImageInfo | None = None) -> int:
    """A job's cost: its photo's, plus its second photo's for a two-photo verification."""
    return image_cost(image) + (image_cost(second_image) if second_image else 0)


def queue_priority(outstanding_before: int) -> int:
    """The Celery priority of a job sent while its organisation already has this much cost queued
    or running: 0 (first served) for an idle organisation, one step lower per doubling of its
    backlog (1, 2-3, 4-7, ... units), down to the last step at 256 units."""
    return min(PRIORITY_STEPS[-1], int(math.log2(1 + outstanding_before)))


def admit(session: Session, organisation_id: uuid.UUID, new_costs: Sequence[int], *, limit: int) -> list[int]:
    """Check that the queued jobs this transaction added (costing `new_costs`, already added to the
    session) fit the organisation's budget of `limit` units (ORG_MAX_PENDING_COST), and return
    their queue priorities in the same order.

    The organisation's row is locked (FOR NO KEY UPDATE: it does not block rows that merely refer
    to it) until the transaction ends, so concurrent submissions of one organisation are checked
    one after another, each seeing the jobs the others committed: the SQL function (migration 0012)
    sums the outstanding costs after the lock is granted, in one round trip and one statement.
    Raises 429 `job_budget_exceeded` (the caller's transaction then rolls back, leaving nothing
    behind)."""
    if not new_costs:  # nothing queued (a batch whose every item was refused): nothing to check
        return []
    locked_sum = func.lock_organisation_outstanding_cost(organisation_id, type_=BigInteger)
    outstanding = session.execute(select(locked_sum)).scalar_one()  # with this transaction's jobs (autoflush)
    requested = sum(new_costs)
    before = outstanding - requested
    if outstanding > limit:
        raise budget_exceeded(limit=limit, outstanding=before, requested=requested)
    priorities = []
    for cost in new_costs:
        priorities.append(queue_priority(before))
        before += cost
    return priorities


def budget_exceeded(*, limit: int, outstanding: int, requested: int) -> ServiceError:
    excess = outstanding + requested - limit
    retry_after = min(MAX_RETRY_AFTER_SECONDS, max(1, math.ceil(excess * SECONDS_PER_COST_UNIT)))
    advice = (
        f"wait for some of them to finish (about {retry_after} s)"
        if requested <= limit
        else "this request alone is over the limit: send it in smaller parts"
    )
    return ServiceError(
        "job_budget_exceeded",
        f"Your organisation's queued and running jobs cost {outstanding} units and this request "
        f"{requested} more, over its limit of {limit} (ORG_MAX_PENDING_COST; a photo costs one unit per "
        f"started {PIXELS_PER_COST_UNIT // 1_000_000} megapixels): {advice}.",
        status=429,
        limit=limit,
        outstanding=outstanding,
        requested=requested,
        retry_after=retry_after,
    )
