"""Signing in and out, the dashboard, a gallery's persons and a person's faces, with the changes an
operator makes to them."""

from __future__ import annotations

import json
import uuid
from typing import Any

from flask import Response, redirect, render_template, request, url_for
from pydantic import ValidationError

from domain import accounts
from domain.errors import ServiceError
from web import services
from web.console import MANAGERS, bp, current, require_role
from web.console.session import sign_in, sign_out
from web.db import get_session
from web.extensions import limiter, login_email_key
from web.ratelimits import login_limit
from web.schemas import PersonPatch
from web.services import browse
from web.settings import app_settings

PAGE_SIZE = 48
MAX_SEARCH = 200


def _safe_next(target: str | None) -> str:
    """Only a console address of this site: never another origin (//host) after signing in."""
    if target and target.startswith("/console") and not target.startswith("//"):
        return target
    return url_for("console.dashboard")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(login_limit, methods=["POST"])
@limiter.limit(login_limit, key_func=login_email_key, methods=["POST"])
def login() -> Any:
    error = None
    if request.method == "POST":
        email, password = request.form.get("email", ""), request.form.get("password", "")
        account = accounts.authenticate(get_session(), email, password, settings=app_settings())
        if account is not None:
            sign_in(account)
            return redirect(_safe_next(request.args.get("next")))
        error = "Invalid email or password."
    status = 401 if error else 200
    return render_template("login.html", error=error, email=request.form.get("email", "")), status


@bp.post("/logout")
def logout() -> Response:
    sign_out()
    return redirect(url_for("console.login"))


@bp.get("/")
def dashboard() -> str:
    user = current()
    return render_template("dashboard.html", board=browse.dashboard(get_session(), user.caller))


@bp.get("/galleries/<name>")
@require_role(*MANAGERS)
def gallery(name: str) -> str:
    search = (request.args.get("q") or "").strip()[:MAX_SEARCH] or None
    page = browse.person_cards(
        get_session(),
        current().caller,
        gallery_name=name,
        search=search,
        limit=PAGE_SIZE,
        cursor=request.args.get("cursor") or None,
    )
    template = "_person_grid.html" if request.headers.get("HX-Request") else "gallery.html"
    return render_template(template, page=page, search=search or "")


def _person(person_id: uuid.UUID):
    return services.load_person(get_session(), current().caller, person_id, with_faces=True)


@bp.get("/persons/<uuid:person_id>")
def person(person_id: uuid.UUID) -> str:
    found = _person(person_id)
    document = services.person_document(found, faces=found.faces)
    return render_template(
        "person.html", person=document, metadata_text=json.dumps(document["metadata"], indent=2, ensure_ascii=False)
    )


@bp.get("/persons/<uuid:person_id>/faces/<uuid:face_id>/crop")
def face_crop(person_id: uuid.UUID, face_id: uuid.UUID) -> Response:
    session = get_session()
    data = services.face_crop(session, services.load_person(session, current().caller, person_id), face_id)
    response = Response(data, mimetype="image/jpeg")
    response.headers["Cache-Control"] = "private, max-age=300"
    return response


def _back_to(person_id: uuid.UUID, message: str) -> Response:
    return redirect(url_for("console.person", person_id=person_id, done=message))


@bp.post("/persons/<uuid:person_id>/faces/<uuid:face_id>/delete")
@require_role(*MANAGERS)
def delete_face(person_id: uuid.UUID, face_id: uuid.UUID) -> Response:
    session, caller = get_session(), current().caller
    services.delete_face(session, caller, services.load_person(session, caller, person_id), face_id)
    return _back_to(person_id, "The face was deleted.")


@bp.post("/persons/<uuid:person_id>/faces/<uuid:face_id>/move")
@require_role(*MANAGERS)
def move_face(person_id: uuid.UUID, face_id: uuid.UUID) -> Response:
    session, caller = get_session(), current().caller
    source = services.load_person(session, caller, person_id)
    target = browse.resolve_person(session, caller, source.gallery_id, request.form.get("target", ""))
    services.move_face(session, caller, person_id, face_id, target.id)
    return _back_to(person_id, f"The face was moved to {target.name}.")


def _patch(form: dict[str, str]) -> dict[str, Any]:
    """The edit form as the API's PersonPatch: the same rules for names, ids and metadata."""
    try:
        metadata = json.loads(form.get("metadata") or "{}")
    except json.JSONDecodeError as problem:
        raise ServiceError("invalid_metadata", f"The metadata is not valid JSON: {problem.msg}.") from None
    external_id = (form.get("external_id") or "").strip() or None
    try:
        patch = PersonPatch.model_validate(
            {"name": form.get("name", ""), "external_id": external_id, "metadata": metadata}
        )
    except ValidationError as problem:
        first = problem.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise ServiceError("validation_error", f"{field}: {first['msg']}") from None
    return patch.model_dump(exclude_unset=True)


@bp.post("/persons/<uuid:person_id>/edit")
@require_role(*MANAGERS)
def edit_person(person_id: uuid.UUID) -> Response:
    session, caller = get_session(), current().caller
    found = services.load_person(session, caller, person_id, with_faces=True)
    services.update_person(session, caller, found, _patch(request.form))
    return _back_to(person_id, "Saved.")


@bp.post("/persons/<uuid:person_id>/merge")
@require_role(*MANAGERS)
def merge_person(person_id: uuid.UUID) -> Response:
    session, caller = get_session(), current().caller
    source = services.load_person(session, caller, person_id)
    target = browse.resolve_person(session, caller, source.gallery_id, request.form.get("target", ""))
    services.merge_persons(session, caller, person_id, target.id)
    return redirect(url_for("console.person", person_id=target.id, done="The persons were merged."))


@bp.post("/persons/<uuid:person_id>/delete")
@require_role(*MANAGERS)
def delete_person(person_id: uuid.UUID) -> Response:
    session, caller = get_session(), current().caller
    found = services.load_person(session, caller, person_id)
    gallery_name = found.gallery.name
    if request.form.get("confirm") != "yes":
        raise ServiceError("confirmation_required", "Confirm the deletion with its checkbox.")
    services.delete_person(session, caller, found)
    return redirect(url_for("console.gallery", name=gallery_name))
