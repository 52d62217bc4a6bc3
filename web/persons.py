"""Persons: enroll from a photo, add photos, list, find by external_id, show, change, delete; and a
person's faces, to inspect and repair (remove a wrong photo's embedding)."""

from __future__ import annotations

from flask import Response, jsonify

from domain.models import Role
from web import services
from web.auth import current_caller, roles_required
from web.db import get_session
from web.extensions import limiter
from web.forms import checked_webhook, read_upload
from web.idempotency import idempotent
from web.ratelimits import submit_limit
from web.schemas import (
    AddFaceForm,
    EnrollForm,
    FaceList,
    FaceMove,
    FacePath,
    IdempotencyHeader,
    JobAccepted,
    Person,
    PersonAccepted,
    PersonMerge,
    PersonPage,
    PersonPatch,
    PersonPath,
    PersonsQuery,
    SubmittedJob,
    WaitQuery,
)
from web.validation import AUTH, errors, resource, validated
from web.waiting import accepted

bp = resource("persons", __name__, "/api/v1/persons", "Enrolled people and their faces")
MANAGERS = (Role.admin, Role.operator)
SUBMIT_ERRORS = errors(400, 404, 409, 413, 415, 503, *AUTH)
CROP_RESPONSE = {
    "description": "the crop as JPEG",
    "content": {"image/jpeg": {"schema": {"type": "string", "contentMediaType": "image/jpeg"}}},
}


@bp.post("", responses={202: PersonAccepted, 200: SubmittedJob, **SUBMIT_ERRORS})
@roles_required(*MANAGERS)
@limiter.limit(submit_limit)
@idempotent
@validated
def enroll(form: EnrollForm, query: WaitQuery, header: IdempotencyHeader):
    """Register a person from a photo (asynchronous)

    Consent is required. `?wait=N` answers 200 with the finished job if it ends within N seconds.
    `target_face=x,y,w,h` chooses the face of a photo with several (else the largest is enrolled, and
    a second face nearly as large fails the job `multiple_faces`, whose error lists `target_faces`).
    """
    upload = read_upload(form.image)
    person, job = services.submit_enrollment(
        get_session(),
        current_caller(),
        name=form.name,
        image=upload,
        gallery_name=form.gallery,
        external_id=form.external_id,
        webhook_url=checked_webhook(form.webhook_url),
        target_face=form.target_face,
        force=form.force,
    )
    return accepted(job, {"person_id": str(person.id), "job_id": str(job.id)}, query.wait)


@bp.post("/<uuid:person_id>/faces", responses={202: JobAccepted, 200: SubmittedJob, **SUBMIT_ERRORS})
@roles_required()  # any role; load_person lets users reach only their own linked person
@limiter.limit(submit_limit)
@idempotent
@validated
def add_face(path: PersonPath, form: AddFaceForm, query: WaitQuery, header: IdempotencyHeader):
    """Add another photo of a person (asynchronous)

    The face must resemble the person's enrolled faces, else the job fails `face_mismatch`;
    `force=true` enrolls it anyway (audited).
    """
    session = get_session()
    person = services.load_person(session, current_caller(), path.person_id)
    webhook_url = checked_webhook(form.webhook_url)
    upload = read_upload(form.image)
    job = services.submit_face(
        session, current_caller(), person, upload, webhook_url, force=form.force, target_face=form.target_face
    )
    return accepted(job, {"job_id": str(job.id)}, query.wait)


@bp.get("/<uuid:person_id>/faces", responses={200: FaceList, **errors(400, 404, *AUTH)})
@roles_required()
@validated
def list_faces(path: PersonPath):
    """A person's enrolled faces, to inspect and repair"""
    session = get_session()
    person = services.load_person(session, current_caller(), path.person_id)
    return jsonify({"items": services.list_faces(session, person)})


@bp.delete("/<uuid:person_id>/faces/<uuid:face_id>", responses={204: None, **errors(400, 404, *AUTH)})
@roles_required()
@validated
def remove_face(path: FacePath):
    """Remove one embedding of a person (a wrong photo); searches stop using it at once"""
    session = get_session()
    account = current_caller()
    services.delete_face(session, account, services.load_person(session, account, path.person_id), path.face_id)
    return "", 204


@bp.get(
    "/<uuid:person_id>/faces/<uuid:face_id>/crop",
    responses={200: CROP_RESPONSE, **errors(400, 404, *AUTH)},
)
@roles_required()
@validated
def face_crop(path: FacePath):
    """The face's aligned 112x112 crop, as JPEG (404 crop_not_found for a face kept without one)"""
    session = get_session()
    person = services.load_person(session, current_caller(), path.person_id)
    response = Response(services.face_crop(session, person, path.face_id), mimetype="image/jpeg")
    # Biometric data: browsers may keep it for the signed-in user only, never a shared cache.
    response.headers["Cache-Control"] = "private, max-age=300"
    return response


@bp.get("", responses={200: PersonPage, **errors(400, 404, *AUTH)})
@roles_required(*MANAGERS)
@validated
def list_persons(query: PersonsQuery):
    """A gallery's persons in creation order (keyset pagination); 404 for an unknown gallery

    `q` keeps those whose name or external_id contains it, in any case.
    """
    page = services.list_persons(
        get_session(),
        current_caller(),
        gallery_name=query.gallery,
        external_id=query.external_id,
        limit=query.limit,
        cursor=query.cursor,
        text=query.q,
    )
    return jsonify(page)


@bp.get("/<uuid:person_id>", responses={200: Person, **errors(400, 404, *AUTH)})
@roles_required()
@validated
def show(path: PersonPath):
    """A person with its faces and consent record"""
    person = services.load_person(get_session(), current_caller(), path.person_id, with_faces=True)
    return jsonify(services.person_document(person, faces=person.faces))


@bp.patch("/<uuid:person_id>", responses={200: Person, **errors(400, 404, 409, *AUTH)})
@roles_required(*MANAGERS)
@validated
def change(path: PersonPath, body: PersonPatch):
    """Change a person's name, external_id (null removes it) or metadata (replaced whole)"""
    session = get_session()
    account = current_caller()
    person = services.load_person(session, account, path.person_id, with_faces=True)
    services.update_person(session, account, person, body.model_dump(exclude_unset=True))
    return jsonify(services.person_document(person, faces=person.faces))


@bp.post("/<uuid:person_id>/merge", responses={200: Person, **errors(400, 404, 409, *AUTH)})
@roles_required(*MANAGERS)
@validated
def merge(path: PersonPath, body: PersonMerge):
    """Merge this person into another of its gallery (JSON `{into}`): every face moves there, earlier
    results that named this person name that one, and this person is deleted (audited); answers the
    person merged into"""
    person = services.merge_persons(get_session(), current_caller(), path.person_id, body.into)
    return jsonify(services.person_document(person, faces=person.faces))


@bp.post("/<uuid:person_id>/faces/<uuid:face_id>/move", responses={200: Person, **errors(400, 404, 409, *AUTH)})
@roles_required(*MANAGERS)
@validated
def move_face(path: FacePath, body: FaceMove):
    """Move one face to another person of the gallery (JSON `{person_id}`, audited); answers that person"""
    person = services.move_face(get_session(), current_caller(), path.person_id, path.face_id, body.person_id)
    return jsonify(services.person_document(person, faces=person.faces))


@bp.delete("/<uuid:person_id>", responses={204: None, **errors(400, 404, *AUTH)})
@roles_required()
@validated
def remove(path: PersonPath):
    """Delete a person and every embedding of it"""
    session = get_session()
    account = current_caller()
    services.delete_person(session, account, services.load_person(session, account, path.person_id))
    return "", 204
