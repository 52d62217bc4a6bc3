"""Enrolling and recognizing from the browser, and following jobs and batches: the pages, and the
JSON their scripts send photos to and poll. Forms are read with the API's own request models, so a
photo, a name or a gallery name is judged exactly as the API judges it."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any, TypeVar

from flask import jsonify, render_template, request
from pydantic import BaseModel, ValidationError

from domain.batches import batch_document
from domain.errors import ServiceError
from domain.jobs import job_document
from domain.models import JobStatus, JobType
from web import services
from web.batch_input import read_entries
from web.console import MANAGERS, bp, current, require_role
from web.db import get_session
from web.extensions import limiter
from web.forms import read_upload
from web.ratelimits import batch_limit, submit_limit
from web.schemas import AddFaceForm, BatchForm, EnrollForm, RecognizeForm
from web.services import browse
from web.settings import app_settings
from web.validation import describe

Form = TypeVar("Form", bound=BaseModel)
LIST_SIZE = 50


def _read_form(model: type[Form], ignore: Collection[str] = ()) -> Form:
    """The request's form fields and files as `model` (the API's), or 400 naming what to fix;
    `ignore`: the console's own fields beside the API's."""
    values: dict[str, Any] = {
        key: value for key, value in request.form.items() if key != "csrf_token" and key not in ignore
    }
    for key in request.files:
        files = request.files.getlist(key)
        values[key] = files if key == "images" else files[0]
    try:
        return model.model_validate(values)
    except ValidationError as problem:
        raise ServiceError(**describe(problem)) from None


def _target_face(form: BaseModel) -> dict[str, Any]:
    """The chosen face (x,y,w,h) of a photo with several, where the form carries one."""
    chosen = getattr(form, "target_face", None)
    return {"target_face": chosen} if chosen is not None else {}


def _gallery_names() -> list[str]:
    return [gallery["name"] for gallery in browse.dashboard(get_session(), current().caller)["galleries"]]


@bp.get("/enroll")
@require_role(*MANAGERS)
def enroll_page() -> str:
    return render_template("enroll.html", galleries=_gallery_names(), max_bytes=app_settings().max_batch_bytes)


@bp.before_request
def _batch_body_limit() -> None:
    """A batch may be larger than one photo (as on the API's batch route)."""
    if request.endpoint == "console.submit_batch":
        request.max_content_length = app_settings().max_batch_bytes


@bp.post("/enroll/batch")
@require_role(*MANAGERS)
@limiter.limit(batch_limit)
def submit_batch() -> Any:
    form = _read_form(BatchForm)
    batch = services.submit_batch(
        get_session(), current().caller, entries=read_entries(form), gallery_name=form.gallery, webhook_url=None
    )
    return jsonify({"batch_id": str(batch.id), "total": batch.total}), 202


@bp.post("/enroll/one")
@require_role(*MANAGERS)
@limiter.limit(submit_limit)
def submit_one() -> Any:
    """One person from one photo, maybe from a chosen face of it (a photo with several faces)."""
    form = _read_form(EnrollForm)
    person, job = services.submit_enrollment(
        get_session(),
        current().caller,
        name=form.name,
        image=read_upload(form.image),
        gallery_name=form.gallery,
        external_id=form.external_id,
        webhook_url=None,
        **_target_face(form),
    )
    return jsonify({"person_id": str(person.id), "job_id": str(job.id)}), 202


@bp.post("/persons/<uuid:person_id>/faces")
@require_role(*MANAGERS)
@limiter.limit(submit_limit)
def add_face(person_id: uuid.UUID) -> Any:
    form = _read_form(AddFaceForm)
    session, caller = get_session(), current().caller
    person = services.load_person(session, caller, person_id)
    job = services.submit_face(
        session, caller, person, read_upload(form.image), None, force=form.force, **_target_face(form)
    )
    return jsonify({"person_id": str(person.id), "job_id": str(job.id)}), 202


@bp.post("/galleries/<name>/faces")
@require_role(*MANAGERS)
@limiter.limit(submit_limit)
def add_face_to_named(name: str) -> Any:
    """A face for a person of the gallery named by id, external_id or exact name (the recognize
    page's "add to an existing person")."""
    person_text = request.form.get("person", "")
    form = _read_form(AddFaceForm, ignore={"person"})
    session, caller = get_session(), current().caller
    person = browse.resolve_person(session, caller, services.require_gallery(session, caller, name).id, person_text)
    job = services.submit_face(
        session, caller, person, read_upload(form.image), None, force=form.force, **_target_face(form)
    )
    return jsonify({"person_id": str(person.id), "job_id": str(job.id)}), 202


@bp.get("/recognize")
@require_role(*MANAGERS)
def recognize_page() -> str:
    return render_template("recognize.html", galleries=_gallery_names())


@bp.post("/recognize")
@require_role(*MANAGERS)
@limiter.limit(submit_limit)
def submit_recognition() -> Any:
    form = _read_form(RecognizeForm)
    job = services.submit_recognition(
        get_session(),
        current().caller,
        image=read_upload(form.image),
        gallery_name=form.gallery,
        threshold=form.threshold,
        top_k=form.top_k,
        max_faces=form.max_faces,
        webhook_url=None,
    )
    return jsonify({"job_id": str(job.id)}), 202


@bp.get("/jobs/<uuid:job_id>.json")
def job_json(job_id: uuid.UUID) -> Any:
    return jsonify(job_document(services.load_job(get_session(), current().caller, job_id)))


@bp.get("/batches/<uuid:batch_id>.json")
@require_role(*MANAGERS)
def batch_json(batch_id: uuid.UUID) -> Any:
    session = get_session()
    return jsonify(batch_document(session, services.load_batch(session, current().caller, batch_id)))


@bp.app_template_filter("duration")
def duration(job: dict[str, Any]) -> str:
    """From submission to its end (what the submitter waited), or a dash while it runs."""
    if not job.get("finished_at") or not job.get("created_at"):
        return "—"
    seconds = (datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["created_at"])).total_seconds()
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _enum_arg(kind: type, name: str) -> Any:
    value = request.args.get(name) or None
    try:
        return kind(value) if value else None
    except ValueError:
        raise ServiceError("invalid_field", f"Unknown {name} '{value}'.") from None


@bp.get("/jobs")
def jobs() -> str:
    session, caller = get_session(), current().caller
    status, job_type = _enum_arg(JobStatus, "status"), _enum_arg(JobType, "type")
    page = services.list_jobs(
        session, caller, status=status, job_type=job_type, limit=LIST_SIZE, cursor=request.args.get("cursor") or None
    )
    batches = services.list_batches(session, caller, limit=10, cursor=None) if caller.manages_galleries else None
    return render_template(
        "jobs.html",
        page=page,
        batches=batches,
        status=status.value if status else "",
        job_type=job_type.value if job_type else "",
        statuses=[s.value for s in JobStatus],
        types=[t.value for t in JobType],
    )
