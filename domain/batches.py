"""Batch enrollment state: one enrollment job per photo, summarised into the batch document."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from domain.enrollment import discard_batch_gallery
from domain.job_params import EnrollParams, params_of
from domain.jobs import iso, now
from domain.models import UNFINISHED, Batch, Job, JobStatus


def batch_status(counts: dict[JobStatus, int], total: int) -> str:
    succeeded, failed = counts.get(JobStatus.succeeded, 0), counts.get(JobStatus.failed, 0)
    if succeeded + failed < total:
        return "queued" if counts.get(JobStatus.queued, 0) == total else "running"
    if failed == 0:
        return "succeeded"
    return "failed" if succeeded == 0 else "partial"


def job_counts(session: Session, batch_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[JobStatus, int]]:
    """Each batch's jobs by status, for many batches in one statement (a list of batches)."""
    counts: dict[uuid.UUID, dict[JobStatus, int]] = {batch_id: {} for batch_id in batch_ids}
    rows = session.execute(
        select(Job.batch_id, Job.status, func.count())
        .where(Job.batch_id.in_(batch_ids))
        .group_by(Job.batch_id, Job.status)
    )
    for batch_id, status, count in rows:
        counts[batch_id][status] = count
    return counts


def batch_document(
    session: Session, batch: Batch, *, with_items: bool = True, counts: dict[JobStatus, int] | None = None
) -> dict[str, Any]:
    """The batch with its counts (read here unless given: job_counts) and, in manifest (or
    archive) order, its items."""
    if counts is None:
        counts = job_counts(session, [batch.id])[batch.id]
    document: dict[str, Any] = {
        "id": str(batch.id),
        "status": batch_status(counts, batch.total),
        "gallery": batch.gallery_name,
        "total": batch.total,
        "succeeded": counts.get(JobStatus.succeeded, 0),
        "failed": counts.get(JobStatus.failed, 0),
        "created_at": iso(batch.created_at),
    }
    if with_items:
        rows = sorted(
            session.execute(select(Job).where(Job.batch_id == batch.id)).scalars(),
            key=lambda job: params_of(job, EnrollParams).index or 0,
        )
        document["items"] = [_item(job) for job in rows]
    if batch.webhook_url:
        document["webhook"] = {"url": batch.webhook_url, "deliveries": batch.deliveries}
    return document


def _item(job: Job) -> dict[str, Any]:
    result = job.result or {}
    item = params_of(job, EnrollParams)
    return {
        "index": item.index,
        "file": item.file,
        "name": item.name,
        "external_id": item.external_id,
        "person_id": str(job.person_id) if job.person_id else result.get("person_id"),
        "job_id": str(job.id),
        "status": job.status.value,
        "face_id": result.get("face_id"),
        "faces_detected": result.get("faces_detected", (job.error or {}).get("faces_detected")),
        "duplicate": result.get("duplicate"),
        "possible_duplicate_of": result.get("possible_duplicate_of") or [],
        "error": job.error,
    }


def complete_once(session: Session, batch_id: uuid.UUID) -> bool:
    """True exactly once: for the caller that sees the batch's last item end."""
    unfinished = session.execute(
        select(func.count()).where(Job.batch_id == batch_id, Job.status.in_(UNFINISHED))
    ).scalar_one()
    if unfinished:
        return False
    claimed = session.execute(
        update(Batch).where(Batch.id == batch_id, Batch.notified_at.is_(None)).values(notified_at=now())
    )
    return claimed.rowcount == 1


def end_once(session: Session, batch_id: uuid.UUID) -> bool:
    """Close the batch, exactly once, for the caller that ends its last item: a batch whose every
    item failed leaves no gallery it created. True when the batch has a webhook: that caller
    commits, then enqueues the delivery."""
    if not complete_once(session, batch_id):
        return False
    discard_batch_gallery(session, batch_id)
    return session.execute(select(Batch.webhook_url).where(Batch.id == batch_id)).scalar_one() is not None
