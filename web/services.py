"""What the API does, called by the handlers once input is parsed and the caller authorised."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from config import get_settings
from domain import audit, enrollment
from domain.batches import batch_document, end_once
from domain.callers import Caller
from domain.errors import NotFound, ServiceError
from domain.jobs import create_job, finish, iso, job_document, now
from domain.models import Batch, Face, Gallery, Job, JobStatus, JobType, Person
from domain.notifications import announce_job_ended
from web.batch_input import Entry
from web.logs import request_stage
from web.pagination import keyset_page
from workers.celery_app import enqueue, enqueue_webhook

log = logging.getLogger(__name__)


# --- galleries and access -------------------------------------------------------------


def _in_scope(caller: Caller, name: str) -> None:
    if not caller.may_use_gallery(name):
        raise ServiceError(
            "gallery_out_of_scope", f"This API key may not use the gallery '{name}'.", status=403, gallery=name
        )


def find_gallery(session: Session, caller: Caller, name: str) -> Gallery | None:
    """The caller's organisation's gallery named `name` (an API key: only within its scope)."""
    _in_scope(caller, name)
    return session.execute(
        select(Gallery).where(Gallery.organisation_id == caller.organisation_id, Gallery.name == name)
    ).scalar_one_or_none()


def get_or_create_gallery(session: Session, caller: Caller, name: str) -> tuple[Gallery, bool]:
    """The organisation's gallery named `name`, and whether this call created it."""
    gallery = find_gallery(session, caller, name)
    if gallery is not None:
        return gallery, False
    gallery = Gallery(organisation_id=caller.organisation_id, owner_id=caller.id, name=name)
    session.add(gallery)
    session.flush()
    return gallery, True


def require_gallery(session: Session, caller: Caller, name: str) -> Gallery:
    gallery = find_gallery(session, caller, name)
    if gallery is None:
        raise NotFound("gallery_not_found", f"Your organisation has no gallery named '{name}'.")
    return gallery


def _scoped_galleries(caller: Caller) -> Select:
    return select(Gallery.id).where(
        Gallery.organisation_id == caller.organisation_id, Gallery.name.in_(caller.galleries or ())
    )


def load_person(session: Session, caller: Caller, person_id: uuid.UUID, *, with_faces: bool = False) -> Person:
    """The person if the caller may see it, else 404: admins and operators see the persons of
    their organisation's galleries (an API key: of its galleries), users their own linked person."""
    query = select(Person).join(Gallery).where(Person.id == person_id)
    if caller.manages_galleries:
        query = query.where(Gallery.organisation_id == caller.organisation_id)
        if caller.galleries is not None:
            query = query.where(Gallery.name.in_(caller.galleries))
    else:
        query = query.where(Person.account_id == caller.id)
    if with_faces:
        query = query.options(selectinload(Person.faces), selectinload(Person.gallery))
    person = session.execute(query).scalar_one_or_none()
    if person is None:
        raise NotFound("person_not_found", "No such person.")
    return person


def visible_to(caller: Caller, model: type[Job] | type[Batch]) -> ColumnElement[bool]:
    """Admins and operators see their organisation's jobs and batches (an API key: those of its
    galleries); users see their own."""
    if not caller.manages_galleries:
        return model.owner_id == caller.id
    condition = model.organisation_id == caller.organisation_id
    if caller.galleries is not None:
        condition = condition & model.gallery_id.in_(_scoped_galleries(caller))
    return condition


def load_job(session: Session, account: Caller, job_id: uuid.UUID) -> Job:
    query = select(Job).where(Job.id == job_id, visible_to(account, Job))
    job = session.execute(query).scalar_one_or_none()
    if job is None:
        raise NotFound("job_not_found", "No such job.")
    return job


def list_jobs(
    session: Session,
    account: Caller,
    *,
    status: JobStatus | None,
    job_type: JobType | None,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    """The jobs the caller may see, newest first."""
    query = select(Job).where(visible_to(account, Job))
    if status:
        query = query.where(Job.status == status)
    if job_type:
        query = query.where(Job.type == job_type)
    page, next_cursor = keyset_page(
        session, query, (Job.created_at, Job.id), limit=limit, cursor=cursor, descending=True
    )
    return {"items": [job_document(job) for (job,) in page], "next_cursor": next_cursor}


def cancel_job(session: Session, account: Caller, job: Job) -> bool:
    """End a still-queued job; False when a worker already took it (or it ended)."""
    cancelled = finish(
        session, job.id, error=ServiceError("cancelled", "The job was cancelled."), only_from=JobStatus.queued
    )
    if cancelled:
        audit.record(session, account, "job.cancel", "job", job.id)
        if job.type is JobType.enroll:
            enrollment.discard_failed(session, job)
    session.commit()
    if cancelled:
        announce_job_ended(job.id)
    session.refresh(job)
    return cancelled


# --- submitting jobs --------------------------------------------------------------------


def queue_unavailable() -> ServiceError:
    return ServiceError("queue_unavailable", "The job queue is unavailable; try again shortly.", status=503)


def _commit_and_enqueue(session: Session, job: Job, created: list[Any]) -> None:
    """Commit the job (with its photo) first, then send its id; undo everything if the queue is down."""
    with request_stage("store"):
        session.commit()
    try:
        with request_stage("enqueue"):
            enqueue(job.id)
    except Exception:  # kombu raises many types for an unreachable broker
        log.exception("could not enqueue job %s", job.id)
        session.execute(delete(Job).where(Job.id == job.id))
        for row in created:
            session.delete(row)
        session.commit()
        raise queue_unavailable() from None


def _enroll_params(
    image: bytes,
    *,
    created_person: bool,
    created_gallery: bool,
    force: bool = False,
    sha256: str | None = None,
    **item: Any,
) -> dict[str, Any]:
    """What an enrollment job needs beside its photo: what it created (removed again if it fails:
    domain/enrollment.discard_failed), the photo's hash, and the policy in force at submission."""
    return {
        "created_person": created_person,
        "created_gallery": created_gallery,
        "force": force,
        "photo_sha256": sha256 or enrollment.photo_sha256(image),
        "quality_gates": get_settings().enrollment_policy(),
        **item,
    }


def _submit_enroll_job(
    session: Session,
    account: Caller,
    person: Person,
    image: bytes,
    *,
    created_person: bool,
    created_gallery: bool = False,
    force: bool = False,
    action: str,
    webhook_url: str | None,
) -> Job:
    """One enrollment job for `person`; a forced one is audited as such."""
    return _submit_job(
        session,
        account,
        audit_as=(action, "person", person.id),
        audit_details={"force": True} if force else None,
        created=[person] if created_person else [],
        webhook_url=webhook_url,
        job_type=JobType.enroll,
        image=image,
        gallery_id=person.gallery_id,
        person_id=person.id,
        params=_enroll_params(
            image,
            created_person=created_person,
            created_gallery=created_gallery,
            force=force,
            gallery=person.gallery.name,
        ),
    )


def _submit_job(
    session: Session,
    account: Caller,
    *,
    audit_as: tuple[str, str | None, Any],
    created: list[Any],
    audit_details: dict[str, Any] | None = None,
    **job_fields: Any,
) -> Job:
    """A single-photo job of `account`: stored with its photo, audited (action, target type and
    id), committed, then enqueued; `created` rows are removed again if the queue is down."""
    job = create_job(session, owner_id=account.id, organisation_id=account.organisation_id, **job_fields)
    audit.record(session, account, *audit_as, job_id=str(job.id), **(audit_details or {}))
    _commit_and_enqueue(session, job, created=created)
    return job


def submit_enrollment(
    session: Session,
    account: Caller,
    *,
    name: str,
    image: bytes,
    gallery_name: str,
    external_id: str | None,
    webhook_url: str | None = None,
) -> tuple[Person, Job]:
    if external_id and (existing := _person_by_external_id(session, account, gallery_name, external_id)):
        raise person_exists(existing, gallery_name)
    gallery, created_gallery = get_or_create_gallery(session, account, gallery_name)
    person = Person(
        id=uuid.uuid4(),
        gallery_id=gallery.id,
        name=name,
        external_id=external_id,
        consent_at=now(),
        consent_by_id=account.id,
    )
    session.add(person)
    try:
        session.flush()
    except IntegrityError:  # the same external_id, enrolled concurrently
        session.rollback()
        raise person_exists(_person_by_external_id(session, account, gallery_name, external_id), gallery_name) from None
    job = _submit_enroll_job(
        session,
        account,
        person,
        image,
        created_person=True,
        created_gallery=created_gallery,
        action="person.enroll",
        webhook_url=webhook_url,
    )
    return person, job


def _person_by_external_id(session: Session, account: Caller, gallery_name: str, external_id: str) -> Person | None:
    query = (
        select(Person)
        .join(Gallery)
        .where(
            Gallery.organisation_id == account.organisation_id,
            Gallery.name == gallery_name,
            Person.external_id == external_id,
        )
    )
    return session.execute(query).scalar_one_or_none()


def person_exists(person: Person | None, gallery_name: str) -> ServiceError:
    return ServiceError(
        "person_exists",
        f"A person with external_id '{person.external_id if person else ''}' already exists in gallery "
        f"'{gallery_name}': add this photo to it with POST /api/v1/persons/{{person_id}}/faces.",
        status=409,
        person_id=str(person.id) if person else None,
    )


def submit_face(
    session: Session,
    account: Caller,
    person: Person,
    image: bytes,
    webhook_url: str | None = None,
    *,
    force: bool = False,
) -> Job:
    return _submit_enroll_job(
        session,
        account,
        person,
        image,
        created_person=False,
        force=force,
        action="person.add_face",
        webhook_url=webhook_url,
    )


def submit_recognition(
    session: Session,
    account: Caller,
    *,
    image: bytes,
    gallery_name: str,
    threshold: float | None,
    top_k: int,
    max_faces: int,
    webhook_url: str | None = None,
) -> Job:
    gallery = require_gallery(session, account, gallery_name)
    return _submit_job(
        session,
        account,
        audit_as=("recognize", "gallery", gallery.id),
        audit_details={"gallery": gallery_name},
        created=[],
        webhook_url=webhook_url,
        job_type=JobType.recognize,
        image=image,
        gallery_id=gallery.id,
        # No threshold: the worker derives the gallery's from MATCH_FPIR (domain/recognition.py).
        params={
            **_threshold_choice(threshold, gallery),
            "top_k": top_k,
            "max_faces": max_faces,
            "gallery": gallery.name,
        },
    )


def _threshold_choice(requested: float | None, gallery: Gallery) -> dict[str, Any]:
    if requested is not None:
        return {"threshold": requested, "threshold_source": "request"}
    if gallery.match_threshold is not None:
        return {"threshold": gallery.match_threshold, "threshold_source": "gallery"}
    return {"threshold": None}


def submit_verification(
    session: Session,
    account: Caller,
    *,
    image: bytes,
    second_image: bytes | None,
    person: Person | None,
    threshold: float | None,
    webhook_url: str | None = None,
) -> Job:
    return _submit_job(
        session,
        account,
        audit_as=("verify", "person" if person else None, person.id if person else None),
        created=[],
        webhook_url=webhook_url,
        job_type=JobType.verify,
        image=image,
        second_image=second_image,
        gallery_id=person.gallery_id if person else None,
        person_id=person.id if person else None,
        # The 1:1 threshold: a pair question has no gallery (docs/RECOGNITION.md).
        params={
            "threshold": threshold if threshold is not None else get_settings().match_threshold,
            **({"gallery": person.gallery.name} if person else {}),
        },
    )


def redeliver(session: Session, account: Caller, job: Job) -> str:
    """Send a finished job's webhook again, as a new delivery."""
    if not job.webhook_url:
        raise ServiceError("no_webhook", "The job was submitted without a webhook_url.", status=409)
    if not job.status.finished:
        raise ServiceError("job_not_finished", "The job has not ended yet.", status=409)
    audit.record(session, account, "job.redeliver", "job", job.id)
    session.commit()
    return enqueue_webhook(job.id)


# --- batch enrollment ------------------------------------------------------------------------


def find_batch(session: Session, account: Caller, batch_id: uuid.UUID) -> Batch | None:
    query = select(Batch).where(Batch.id == batch_id, visible_to(account, Batch))
    return session.execute(query).scalar_one_or_none()


def list_batches(session: Session, account: Caller, *, limit: int, cursor: str | None) -> dict[str, Any]:
    """The caller's batches (an admin's: everybody's), newest first, without their items."""
    query = select(Batch).where(visible_to(account, Batch))
    page, next_cursor = keyset_page(
        session, query, (Batch.created_at, Batch.id), limit=limit, cursor=cursor, descending=True
    )
    return {"items": [batch_document(session, b, with_items=False) for (b,) in page], "next_cursor": next_cursor}


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
                Person.id.in_(select(Face.person_id).where(Face.source_sha256 == entry.sha256)),
            )
        person = session.execute(existing.limit(1)).scalar_one_or_none()
        created = person is None
        if created:
            person = Person(
                id=uuid.uuid4(),
                gallery_id=gallery.id,
                name=entry.name,
                external_id=entry.external_id,
                consent_at=now(),
                consent_by_id=account.id,
            )
            session.add(person)
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
            params=_enroll_params(
                entry.data or b"",
                created_person=created_person,
                created_gallery=created_gallery,
                force=force,
                sha256=entry.sha256,
                **item,
            ),
        )
        job.batch_id = batch.id
        if entry.error is not None:
            # Refused before storage: a failed item from the start (its image was never kept).
            job.status, job.error, job.finished_at = JobStatus.failed, entry.error.as_dict(), now()
        else:
            queued.append(job.id)
    audit.record(
        session, account, "batch.enroll", "batch", batch.id, total=len(entries), gallery=gallery_name, force=force
    )
    with request_stage("store"):
        session.commit()
    try:
        for job_id in queued:
            enqueue(job_id)
    except Exception:
        log.exception("could not enqueue batch %s", batch.id)
        session.execute(delete(Batch).where(Batch.id == batch.id))
        for person, created in persons.values():
            if created and not session.execute(select(func.count()).where(Face.person_id == person.id)).scalar_one():
                session.execute(delete(Person).where(Person.id == person.id))
        if created_gallery:
            enrollment.discard_gallery_if_empty(session, gallery.id)
        session.commit()
        raise queue_unavailable() from None
    if not queued and end_once(session, batch.id):
        session.commit()
        enqueue_webhook(batch.id, kind="batch")  # every entry was refused: the batch is already over
    session.commit()
    return batch


# --- persons ----------------------------------------------------------------------------


def face_document(face: Face) -> dict[str, Any]:
    return {
        "id": str(face.id),
        "model": face.model,
        "det_score": round(face.det_score, 4),
        "bbox": face.bbox,
        "quality": face.quality,
        # A prefix is enough to tell two photos apart; the full hash would only help to probe
        # whether a given photo was enrolled.
        "photo_sha256_prefix": face.source_sha256[:12] if face.source_sha256 else None,
        "created_at": iso(face.created_at),
    }


def person_document(person: Person, *, faces: list[Face] | None = None, face_count: int | None = None) -> dict:
    document: dict[str, Any] = {
        "id": str(person.id),
        "name": person.name,
        "external_id": person.external_id,
        "metadata": person.meta or {},
        "gallery": person.gallery.name,
        "account_id": str(person.account_id) if person.account_id else None,
        "consent": {
            "given_at": iso(person.consent_at),
            "given_by": str(person.consent_by_id) if person.consent_by_id else None,
        },
        "created_at": iso(person.created_at),
    }
    if faces is not None:
        document["faces"] = [face_document(face) for face in faces]
        document["face_count"] = len(faces)
    else:
        document["face_count"] = face_count or 0
    return document


def list_persons(
    session: Session,
    account: Caller,
    *,
    gallery_name: str,
    external_id: str | None,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    """The gallery's persons in creation order, optionally only the one with `external_id`."""
    gallery = require_gallery(session, account, gallery_name)
    face_count = select(func.count(Face.id)).where(Face.person_id == Person.id).correlate(Person).scalar_subquery()
    query = select(Person, face_count).where(Person.gallery_id == gallery.id).options(selectinload(Person.gallery))
    if external_id is not None:
        query = query.where(Person.external_id == external_id)
    page, next_cursor = keyset_page(session, query, (Person.created_at, Person.id), limit=limit, cursor=cursor)
    return {"items": [person_document(p, face_count=n) for p, n in page], "next_cursor": next_cursor}


def update_person(session: Session, account: Caller, person: Person, changes: dict[str, Any]) -> Person:
    """Change a person's name, external_id or metadata (already validated by the handler)."""
    for field, value in changes.items():
        setattr(person, "meta" if field == "metadata" else field, value)
    audit.record(session, account, "person.update", "person", person.id, fields=sorted(changes))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        existing = session.execute(
            select(Person).where(Person.gallery_id == person.gallery_id, Person.external_id == changes["external_id"])
        ).scalar_one_or_none()
        raise person_exists(existing, person.gallery.name) from None
    return person


def list_faces(session: Session, person: Person) -> list[dict[str, Any]]:
    faces = session.execute(select(Face).where(Face.person_id == person.id).order_by(Face.created_at, Face.id))
    return [face_document(face) for face in faces.scalars()]


def delete_face(session: Session, account: Caller, person: Person, face_id: uuid.UUID) -> None:
    """Remove one embedding of the person (a wrong photo): later searches no longer see it."""
    deleted = session.execute(delete(Face).where(Face.id == face_id, Face.person_id == person.id))
    if deleted.rowcount != 1:
        session.rollback()
        raise NotFound("face_not_found", "The person has no face with this id.")
    audit.record(session, account, "person.delete_face", "person", person.id, face_id=str(face_id))
    session.commit()


def delete_person(session: Session, account: Caller, person: Person) -> None:
    """Delete the person; its faces (embeddings) go with it through ON DELETE CASCADE."""
    audit.record(session, account, "person.delete", "person", person.id, name=person.name)
    session.execute(delete(Person).where(Person.id == person.id))
    session.commit()


# --- galleries ----------------------------------------------------------------------------


def gallery_document(gallery: Gallery, person_count: int) -> dict[str, Any]:
    return {
        "id": str(gallery.id),
        "name": gallery.name,
        "owner_id": str(gallery.owner_id) if gallery.owner_id else None,
        "person_count": person_count,
        "match_threshold": gallery.match_threshold,
        "created_at": iso(gallery.created_at),
    }


def create_gallery(session: Session, account: Caller, name: str, match_threshold: float | None = None) -> Gallery:
    gallery, created = get_or_create_gallery(session, account, name)
    if not created:
        raise ServiceError("gallery_exists", f"You already have a gallery named '{name}'.", status=409)
    gallery.match_threshold = match_threshold
    audit.record(session, account, "gallery.create", "gallery", gallery.id, name=name)
    session.commit()
    return gallery


def list_galleries(session: Session, account: Caller, *, limit: int, cursor: str | None) -> dict[str, Any]:
    """The caller's galleries in creation order (keyset pagination, like every list)."""
    persons = select(func.count(Person.id)).where(Person.gallery_id == Gallery.id).correlate(Gallery)
    query = select(Gallery, persons.scalar_subquery()).where(Gallery.organisation_id == account.organisation_id)
    if account.galleries is not None:
        query = query.where(Gallery.name.in_(account.galleries))
    page, next_cursor = keyset_page(session, query, (Gallery.created_at, Gallery.id), limit=limit, cursor=cursor)
    return {"items": [gallery_document(gallery, count) for gallery, count in page], "next_cursor": next_cursor}


def set_gallery_threshold(session: Session, account: Caller, name: str, threshold: float | None) -> dict[str, Any]:
    """Fix the gallery's recognition threshold, or (None) let it follow MATCH_FPIR again."""
    gallery = require_gallery(session, account, name)
    audit.record(session, account, "gallery.threshold", "gallery", gallery.id, match_threshold=threshold)
    gallery.match_threshold = threshold
    session.commit()
    count = session.execute(select(func.count()).where(Person.gallery_id == gallery.id)).scalar_one()
    return gallery_document(gallery, count)


def delete_gallery(session: Session, account: Caller, name: str) -> None:
    """Delete a gallery with all its persons and their faces (cascade), and its jobs (explicitly:
    jobs outlive a gallery only when an enrollment that created it failed, see Job.gallery_id)."""
    gallery = require_gallery(session, account, name)
    audit.record(session, account, "gallery.delete", "gallery", gallery.id, name=name)
    session.execute(delete(Job).where(Job.gallery_id == gallery.id))
    session.execute(delete(Gallery).where(Gallery.id == gallery.id))
    session.commit()


# --- the caller's own face profile ------------------------------------------------------------

PROFILE_GALLERY = "profile"


def submit_profile_face(
    session: Session, account: Caller, image: bytes, name: str | None, webhook_url: str | None = None
) -> tuple[Person, Job]:
    """Enroll a photo of the caller as its own linked person (created on first use)."""
    person = session.execute(select(Person).where(Person.account_id == account.id)).scalar_one_or_none()
    created, created_gallery = person is None, False
    if created:
        gallery, created_gallery = get_or_create_gallery(session, account, PROFILE_GALLERY)
        person = Person(
            id=uuid.uuid4(),
            gallery_id=gallery.id,
            name=name or account.email.split("@")[0],
            account_id=account.id,
            consent_at=now(),
            consent_by_id=account.id,
        )
        session.add(person)
        session.flush()
    job = _submit_enroll_job(
        session,
        account,
        person,
        image,
        created_person=created,
        created_gallery=created_gallery,
        action="profile.enroll",
        webhook_url=webhook_url,
    )
    return person, job
