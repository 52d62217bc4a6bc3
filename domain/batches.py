"""Batch enrollment state: one enrollment job per photo, summarised into the batch document."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from domain.jobs import iso, now
from domain.models import Batch, Job, JobStatus


def batch_status(counts: dict[JobStatus, int], total: int) -> str:
    succeeded, failed = counts.get(JobStatus.succeeded, 0), counts.get(JobStatus.failed, 0)
    if succeeded + failed < total:
        return "queued" if counts.get(JobStatus.queued, 0) == total else "running"
    if failed == 0:
        return "succeeded"
    return "failed" if succeeded == 0 else "partial"


def batch_document(session: Session, batch: Batch) -> dict[str, Any]:
    items = session.execute(select(Job).where(Job.batch_id == batch.id).order_by(Job.created_at, Job.id)).scalars()
    rows = list(items)
    counts: dict[JobStatus, int] = {}
    for job in rows:
        counts[job.status] = counts.get(job.status, 0) + 1
    document = {
        "id": str(batch.id),
        "status": batch_status(counts, batch.total),
        "total": batch.total,
        "succeeded": counts.get(JobStatus.succeeded, 0),
        "failed": counts.get(JobStatus.failed, 0),
        "created_at": iso(batch.created_at),
        "items": [
            {
                "file": job.params.get("file"),
                "person_id": str(job.person_id) if job.person_id else None,
                "job_id": str(job.id),
                "status": job.status.value,
                "error": job.error,
            }
            for job in rows
        ],
    }
    if batch.webhook_url:
        document["webhook"] = {"url": batch.webhook_url, "deliveries": batch.deliveries}
    return document


def complete_once(session: Session, batch_id: uuid.UUID) -> bool:
    """True exactly once: for the caller that sees the batch's last item end."""
    unfinished = session.execute(
        select(func.count()).where(Job.batch_id == batch_id, Job.status.in_([JobStatus.queued, JobStatus.running]))
    ).scalar_one()
    if unfinished:
        return False
    claimed = session.execute(
        update(Batch).where(Batch.id == batch_id, Batch.notified_at.is_(None)).values(notified_at=now())
    )
    return claimed.rowcount == 1


def batch_webhook_due(session: Session, batch_id: uuid.UUID) -> bool:
    """True exactly once, for the caller that ends the batch's last item, when the batch has a
    webhook: that caller commits, then enqueues the delivery."""
    if not complete_once(session, batch_id):
        return False
    return session.execute(select(Batch.webhook_url).where(Batch.id == batch_id)).scalar_one() is not None
