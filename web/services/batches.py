"""Batch enrollment: one enrollment job per photo, persons shared by external_id (or name and photo)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from domain import audit, budget, enrollment
from domain.batches import batch_document, end_once, job_counts
from domain.callers import Caller
from domain.jobs import create_job, now, task_name
from domain.models import Batch, Face, Gallery, JobStatus, JobType, Person
from domain.persons import new_person
from domain.webhooks import start_delivery
from jobqueue import enqueue
from web.batch_input import Entry
from web.logs import request_stage
from web.pagination import keyset_page
from web.services.access import get_or_create_gallery, one_or_404, visible_to
from web.services.submissions import enroll_params, queue_unavailable
from web.settings import app_settings

log = logging.getLogger(__name__)


def load_batch(session: Session, account: Caller, batch_id: uuid.UUID) -> Batch:
    query = select(Batch).where(Batch.id == batch_id, visible_to(account, Batch))
    return one_or_404(session, query, "batch_not_found", "No such batch.")


def list_batches(session: Session, account: Caller, *, limit: int, cursor: str | None) -> dict[str, Any]:
    """The caller's batches (an admin's: everybody's), newest first, without their items."""
    query = select(Batch).where(visible_to(account, Batch))
    page, next_cursor = keyset_page(
        session, query, (Batch.created_at, Batch.id), limit=limit, cursor=cursor, descending=True
    )
    counts = job_counts(session, [batch.id for (batch,) in page])
    items = [batch_document(session, b, with_items=False, counts=counts[b.id]) for (b,) in page]
    return {"items": items, "next_cursor": next_cursor}


def _batch_person(
    session: Session, account: Caller, gallery: Gallery, entry: Entry, persons: dict
) -> tuple[Person, bool]:
    """The person an entry enrolls, and whether this batch creates it. Entries sharing an
    external_id (or, without one, a name) are one person. An existing person is reused when it
    has the entry's external_id, or, without one, the same name and this very photo (a batch
    re-run after an interruption must not create everybody again)."""
    key = ("external_id", entry.external_id) if entry.external_id else ("name", entry.name)
    if key not in persons:
        in_gallery = select(Person).where(Person.gallery_id == gallery.id)
        if entry.external_id:
            existing = in_gallery.where(Person.external_id == entry.external_id)
        else:
            existing = in_gallery.where(
                Person.name == entry.name,
                Person.id.in_(
                    select(Face.person_id).where(
                        Face.source_sha256 == enrollment.source_sha256(entry.sha256 or "", entry.target_face)
                    )
                ),
            )
        person = session.execute(existing.limit(1)).scalar_one_or_none()
        created = person is None
        if created:
            person = new_person(
                session, gallery.id, entry.name, external_id=entry.external_id, consent_by_id=account.id
            )
        persons[key] = (person, created)
    return persons[key]


def submit_batch(
    session: Session,
    account: Caller,
    *,
    entries: list[Entry],
    gallery_name: str,
    webhook_url: str | None,
    force: bool = False,
) -> Batch:
    """Create the batch with one job per entry (in its manifest or archive order, `index`); bad
    entries are failed items from the start. A person or gallery the batch creates is removed
    again if none of its photos enrolls (domain/enrollment.py)."""
    gallery, created_gallery = get_or_create_gallery(session, account, gallery_name)
    batch = Batch(
        id=uuid.uuid4(),
        owner_id=account.id,
        organisation_id=account.organisation_id,
        gallery_id=gallery.id,
        gallery_name=gallery.name,
        created_gallery=created_gallery,
        total=len(entries),
        webhook_url=webhook_url,
    )
    session.add(batch)
    persons: dict = {}
    queued = []
    for index, entry in enumerate(entries):
        person, created_person = (None, False)
        if entry.error is None:
            person, created_person = _batch_person(session, account, gallery, entry, persons)
        session.flush()
        item = {
            "index": index,
            "file": entry.file,
            "name": entry.name,
            "external_id": entry.external_id,
            "gallery": gallery.name,
        }
        job = create_job(
            session,
            job_type=JobType.enroll,
            owner_id=account.id,
            organisation_id=account.organisation_id,
            image=entry.data,
            gallery_id=gallery.id,
            person_id=person.id if person else None,
            cost=budget.job_cost(entry.info) if entry.info else 1,
            api_key_id=account.api_key_id,
            params=enroll_params(
                entry.data or b"",
                created_person=created_person,
                created_gallery=created_gallery,
                force=force,
                sha256=entry.sha256,
                target_face=entry.target_face,
                **item,
            ),
        )
        job.batch_id = batch.id
        if entry.error is not None:
            # Refused before storage: a failed item from the start (its image was never kept).
            job.status, job.error, job.finished_at = JobStatus.failed, entry.error.as_dict(), now()
        else:
            queued.append(job)
    # The batch fits the organisation's budget whole, or is refused whole (nothing kept).
    limit = app_settings().org_max_pending_cost
    priorities = budget.admit(session, account.organisation_id, [job.cost for job in queued], limit=limit)
    audit.record(
        session, account, "batch.enroll", "batch", batch.id, total=len(entries), gallery=gallery_name, force=force
    )
    with request_stage("store"):
        session.commit()
    try:
        for job, priority in zip(queued, priorities, strict=True):
            enqueue(job.id, task=task_name(job), priority=priority)
    except Exception:
        log.exception("could not enqueue batch %s", batch.id)
        enrollment.undo_unsent(session, queued, batch_id=batch.id)
        session.commit()
        raise queue_unavailable() from None
    if not queued and end_once(session, batch.id):
        session.commit()
        # Every entry was refused: the batch is already over.
        start_delivery(batch.id, kind="batch", organisation_id=batch.organisation_id, settings=app_settings())
    session.commit()
    return batch
