"""Submitting single-photo jobs (enroll, add a face, recognize, verify, the face profile): stored with
their photo, audited, committed, then enqueued; whatever they created is undone if the queue is down."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from domain import audit, budget, enrollment, uploads
from domain.callers import Caller
from domain.errors import ServiceError
from domain.job_params import DetectParams, EnrollParams, RecognizeParams, VerifyParams
from domain.jobs import create_job, joined_photos, task_name
from domain.models import Gallery, Job, JobType, Person
from domain.notifications import redis_client
from domain.persons import new_person
from domain.recognition import threshold_choice
from jobqueue import enqueue
from web.forms import Upload
from web.logs import request_stage
from web.services.access import check_scope, get_or_create_gallery, require_force_allowed, require_gallery
from web.settings import app_settings

log = logging.getLogger(__name__)


def queue_unavailable() -> ServiceError:
    return ServiceError("queue_unavailable", "The job queue is unavailable; try again shortly.", status=503)


def _commit_and_enqueue(session: Session, job: Job, priority: int) -> None:
    """Commit the job (with its photo) first, then send its id; undo everything if the queue is down
    (domain/enrollment.undo_unsent: the job, and the person and gallery it created)."""
    with request_stage("store"):
        session.commit()
    try:
        with request_stage("enqueue"):
            enqueue(job.id, task=task_name(job), priority=priority)
    except Exception:  # kombu raises many types for an unreachable broker
        log.exception("could not enqueue job %s", job.id)
        enrollment.undo_unsent(session, [job])
        session.commit()
        raise queue_unavailable() from None


def enroll_params(
    image: bytes,
    *,
    created_person: bool,
    created_gallery: bool,
    force: bool = False,
    sha256: str | None = None,
    target_face: list[float] | None = None,
    **item: Any,
) -> EnrollParams:
    """What an enrollment job needs beside its photo: what it created (removed again if it fails:
    domain/enrollment.discard_failed), the photo's hash (with the chosen face's box, if any), the face
    to enroll (`target_face`, else the largest), and the policy in force at submission."""
    settings = app_settings()
    photo_hash = sha256 or enrollment.photo_sha256(image)
    return EnrollParams(
        created_person=created_person,
        created_gallery=created_gallery,
        force=force,
        photo_sha256=enrollment.source_sha256(photo_hash, target_face),
        **({"target_face": target_face} if target_face else {}),
        quality_gates=settings.enrollment_policy(),
        store_crop=settings.store_face_crops,
        duplicate_identity=settings.enroll_duplicate_identity,
        same_face_similarity=settings.enroll_same_face_similarity,
        **item,
    )


def _submit_enroll_job(
    session: Session,
    account: Caller,
    person: Person,
    image: Upload,
    *,
    created_person: bool,
    created_gallery: bool = False,
    force: bool = False,
    action: str,
    webhook_url: str | None,
    target_face: list[float] | None = None,
) -> Job:
    """One enrollment job for `person`; a forced one is audited as such."""
    return _submit_job(
        session,
        account,
        audit_as=(action, "person", person.id),
        audit_details={"force": True} if force else None,
        webhook_url=webhook_url,
        job_type=JobType.enroll,
        image=image,
        gallery_id=person.gallery_id,
        person_id=person.id,
        params=enroll_params(
            image.data,
            created_person=created_person,
            created_gallery=created_gallery,
            force=force,
            target_face=target_face,
            gallery=person.gallery.name,
        ),
    )


def _submit_job(
    session: Session,
    account: Caller,
    *,
    image: Upload | None,
    second_image: Upload | None = None,
    photos: list[Upload | ServiceError] | None = None,
    audit_as: tuple[str, str | None, Any],
    audit_details: dict[str, Any] | None = None,
    **job_fields: Any,
) -> Job:
    """A single-photo job of `account`: stored with its photo, checked against its organisation's
    budget (429 `job_budget_exceeded`, nothing kept), audited (action, target type and id),
    committed, then enqueued; what it created is removed again if the queue is down. The cost comes
    from the sizes the upload validation read (the photos are not opened again)."""
    if photos is None:
        cost = budget.job_cost(image.info, second_image.info if second_image else None)
    else:  # several photos: each one read counts; a refused one is an empty entry
        cost = sum(budget.image_cost(photo.info) for photo in photos if isinstance(photo, Upload))
    first, second = (image.data if image else _joined(photos)), (second_image.data if second_image else None)
    settings = app_settings()
    in_redis = settings.upload_store == uploads.REDIS  # the photos wait in Redis, not in the row
    if in_redis:
        job_fields["params"] = job_fields["params"].model_copy(update={"upload": uploads.REDIS})
    job = create_job(
        session,
        owner_id=account.id,
        organisation_id=account.organisation_id,
        image=None if in_redis else first,
        second_image=None if in_redis else second,
        cost=cost,
        api_key_id=account.api_key_id,
        **job_fields,
    )
    # Audited before the budget check: its query's autoflush then writes both rows in one flush
    # (a second flush at commit cost ~1 ms of CPU); a refused job rolls the audit row back with it.
    audit.record(session, account, *audit_as, job_id=str(job.id), **(audit_details or {}))
    (priority,) = budget.admit(session, account.organisation_id, [cost], limit=settings.org_max_pending_cost)
    if in_redis:  # admitted: kept before the commit, so that a worker finds them (a lost commit: the TTL)
        uploads.put(redis_client(), job.id, first, second, settings.upload_ttl_seconds)
    _commit_and_enqueue(session, job, priority=priority)
    return job


def submit_enrollment(
    session: Session,
    account: Caller,
    *,
    name: str,
    image: Upload,
    gallery_name: str,
    external_id: str | None,
    webhook_url: str | None = None,
    target_face: list[float] | None = None,
    force: bool = False,
) -> tuple[Person, Job]:
    """A new person from a photo: its largest face, or the one `target_face` (x, y, w, h) chooses.
    `force` enrolls it even if another person of the gallery has that face (ENROLL_DUPLICATE_IDENTITY=refuse)."""
    check_scope(account, gallery_name)  # before the external_id lookup: a key learns nothing outside its scope
    require_force_allowed(account, force)
    if external_id and (existing := _person_by_external_id(session, account, gallery_name, external_id)):
        raise person_exists(existing, gallery_name)
    gallery, created_gallery = get_or_create_gallery(session, account, gallery_name)
    person = new_person(session, gallery.id, name, external_id=external_id, consent_by_id=account.id)
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
        target_face=target_face,
        force=force,
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
    image: Upload,
    webhook_url: str | None = None,
    *,
    force: bool = False,
    target_face: list[float] | None = None,
) -> Job:
    require_force_allowed(account, force)
    return _submit_enroll_job(
        session,
        account,
        person,
        image,
        created_person=False,
        force=force,
        action="person.add_face",
        webhook_url=webhook_url,
        target_face=target_face,
    )


def submit_recognition(
    session: Session,
    account: Caller,
    *,
    image: Upload | None,
    gallery_name: str,
    threshold: float | None,
    top_k: int,
    max_faces: int,
    webhook_url: str | None = None,
    source: str | None = None,
    photos: list[Upload | ServiceError] | None = None,
) -> Job:
    """One photo (`image`), or several (`photos`, in order: an entry that is an error was refused
    and fails alone in the result, `params.photo_errors`)."""
    gallery = require_gallery(session, account, gallery_name)
    # Unmatched faces go to the gallery's unknowns pool only where it opted in (checked again by
    # the worker under the gallery's lock, domain/unknowns.sight).
    pool = {"unknowns": True, "source": source} if gallery.unknowns_enabled else {}
    return _submit_job(
        session,
        account,
        audit_as=("recognize", "gallery", gallery.id),
        audit_details={"gallery": gallery_name},
        webhook_url=webhook_url,
        job_type=JobType.recognize,
        image=image,
        photos=photos,
        gallery_id=gallery.id,
        # No threshold: the worker derives the gallery's from MATCH_FPIR (domain/recognition.py).
        params=RecognizeParams(
            **threshold_choice(threshold, gallery.match_threshold),
            top_k=top_k,
            max_faces=max_faces,
            gallery=gallery.name,
            **pool,
            **(_photo_params(photos) if photos is not None else {}),
        ),
    )


def _photo_params(photos: list[Upload | ServiceError]) -> dict[str, Any]:
    """The sizes of a recognition's photos in its upload (a refused one is 0 bytes), and the errors
    of those refused at submission."""
    _, sizes = joined_photos([photo.data if isinstance(photo, Upload) else b"" for photo in photos])
    errors = {str(i): photo.as_dict() for i, photo in enumerate(photos) if isinstance(photo, ServiceError)}
    return {"photo_sizes": sizes, **({"photo_errors": errors} if errors else {})}


def _joined(photos: list[Upload | ServiceError] | None) -> bytes:
    return joined_photos([photo.data if isinstance(photo, Upload) else b"" for photo in photos or []])[0]


def submit_detection(
    session: Session,
    account: Caller,
    *,
    image: Upload,
    max_faces: int,
    landmarks: int,
    webhook_url: str | None = None,
) -> Job:
    """Find and describe the faces of a photo: no gallery, nothing compared or stored but the job.
    The enrollment gates in force travel with it: `quality_for_recognition` says `high` for the
    faces that would pass them."""
    return _submit_job(
        session,
        account,
        audit_as=("detect", None, None),
        webhook_url=webhook_url,
        job_type=JobType.detect,
        image=image,
        params=DetectParams(
            max_faces=max_faces,
            landmarks=landmarks,
            quality_gates=app_settings().enrollment_policy(),
        ),
    )


def submit_verification(
    session: Session,
    account: Caller,
    *,
    image: Upload,
    second_image: Upload | None,
    person: Person | None,
    threshold: float | None,
    webhook_url: str | None = None,
) -> Job:
    return _submit_job(
        session,
        account,
        audit_as=("verify", "person" if person else None, person.id if person else None),
        webhook_url=webhook_url,
        job_type=JobType.verify,
        image=image,
        second_image=second_image,
        gallery_id=person.gallery_id if person else None,
        person_id=person.id if person else None,
        # The 1:1 threshold: a pair question has no gallery (docs/RECOGNITION.md).
        params=VerifyParams(
            threshold=threshold if threshold is not None else app_settings().match_threshold,
            **({"gallery": person.gallery.name} if person else {}),
        ),
    )


PROFILE_GALLERY = "profile"


def submit_profile_face(
    session: Session, account: Caller, image: Upload, name: str | None, webhook_url: str | None = None
) -> tuple[Person, Job]:
    """Enroll a photo of the caller as its own linked person (created on first use)."""
    person = session.execute(select(Person).where(Person.account_id == account.id)).scalar_one_or_none()
    created, created_gallery = person is None, False
    if created:
        gallery, created_gallery = get_or_create_gallery(session, account, PROFILE_GALLERY)
        own_name = name or account.email.split("@")[0]
        person = new_person(session, gallery.id, own_name, account_id=account.id, consent_by_id=account.id)
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
