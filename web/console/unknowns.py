"""A gallery's recurring unknown faces in the console: the strangers with their crops, and naming,
merging or forgetting one, through the same services as the API (web/services/unknowns.py)."""

from __future__ import annotations

import uuid

from flask import Response, redirect, render_template, request, url_for

from domain.errors import ServiceError
from web.console import MANAGERS, bp, current, require_role
from web.db import get_session
from web.services import unknowns as service
from web.settings import app_settings

PAGE_SIZE = 48


@bp.get("/galleries/<name>/unknowns")
@require_role(*MANAGERS)
def unknowns(name: str) -> str:
    order = "count" if request.args.get("order") == "count" else "last_seen"
    offset = max(0, request.args.get("offset", 0, type=int))
    page = service.list_groups(get_session(), current().caller, name, order=order, limit=PAGE_SIZE, offset=offset)
    return render_template("unknowns.html", gallery=name, page=page, order=order, offset=offset, page_size=PAGE_SIZE)


@bp.get("/galleries/<name>/unknowns/<int:number>/faces/<uuid:face_id>/crop")
@require_role(*MANAGERS)
def unknown_crop(name: str, number: int, face_id: uuid.UUID) -> Response:
    response = Response(
        service.face_crop(get_session(), current().caller, name, number, face_id), mimetype="image/jpeg"
    )
    response.headers["Cache-Control"] = "private, max-age=300"
    return response


def _back(name: str, message: str) -> Response:
    return redirect(url_for("console.unknowns", name=name, done=message))


@bp.post("/galleries/<name>/unknowns/<int:number>/enroll")
@require_role(*MANAGERS)
def enroll_unknown(name: str, number: int) -> Response:
    if request.form.get("consent") != "yes":
        raise ServiceError("consent_required", "Confirm that this person has consented to being enrolled.")
    person_name = (request.form.get("name") or "").strip()
    if not person_name:
        raise ServiceError("invalid_field", "Give the person a name.", field="name")
    enrolled = service.enroll_group(
        get_session(),
        current().caller,
        name,
        number,
        name=person_name[:200],
        external_id=(request.form.get("external_id") or "").strip()[:200] or None,
        metadata={},
        settings=app_settings(),
    )
    return redirect(url_for("console.person", person_id=enrolled["person_id"], done="Enrolled from the unknown faces."))


@bp.post("/galleries/<name>/unknowns/<int:number>/merge")
@require_role(*MANAGERS)
def merge_unknown(name: str, number: int) -> Response:
    into = request.form.get("into", type=int)
    if not into:
        raise ServiceError("invalid_field", "Give the number of the unknown to merge into.", field="into")
    service.merge_groups(get_session(), current().caller, name, number, into)
    return _back(name, f"Unknown #{number} was merged into #{into}.")


@bp.post("/galleries/<name>/unknowns/<int:number>/delete")
@require_role(*MANAGERS)
def delete_unknown(name: str, number: int) -> Response:
    service.delete_group(get_session(), current().caller, name, number)
    return _back(name, f"Unknown #{number} and its faces were deleted.")
