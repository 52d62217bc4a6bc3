"""Who may see what: the caller's organisation's galleries (an API key: its scope), persons, jobs and batches.

The rules for API keys live here and in domain/callers.py (the key's role, capped by its creator's
current one), nowhere else:
- a key's gallery scope holds for every route and every role: persons, jobs, batches, galleries;
- the scope is checked before anything is looked up, so a key learns nothing about a gallery it
  cannot see (not even whether an external_id exists there);
- accounts, API keys, the webhook secret's rotation and the audit log need a person signed in
  with a password (`require_signed_in`); the organisation-wide webhook secret is not for a
  scoped key (`require_whole_organisation`).
"""

from __future__ import annotations

import difflib
import uuid
from typing import TypeVar

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session, selectinload

from domain.callers import Caller
from domain.errors import NotFound, ServiceError
from domain.models import Batch, Gallery, Job, Person

Row = TypeVar("Row")


def one_or_404(session: Session, query: Select[tuple[Row]], code: str, message: str) -> Row:
    """The one row `query` finds, else 404 `code`: the one "load or 404" of the API. A row the
    caller may not see is left out by the query, so it answers exactly as one that does not exist."""
    found = session.execute(query).scalar_one_or_none()
    if found is None:
        raise NotFound(code, message)
    return found


def require_signed_in(caller: Caller) -> None:
    """Refuse an API key (403 `password_login_required`): changing accounts, keys or the webhook
    secret, and reading the audit log, are a person's decisions, not an integration's."""
    if caller.is_api_key:
        raise ServiceError(
            "password_login_required",
            "API keys cannot manage accounts, API keys or the webhook secret, nor read the audit log: "
            "log in with a password (POST /api/v1/auth/login) and use that access token.",
            status=403,
        )


def require_whole_organisation(caller: Caller) -> None:
    """Refuse a gallery-scoped key (403 `organisation_scope_required`) what spans every gallery."""
    if caller.scoped:
        raise ServiceError(
            "organisation_scope_required",
            "This API key is limited to some galleries; this needs a key of the whole organisation.",
            status=403,
        )


def require_force_allowed(caller: Caller, force: bool) -> None:
    """`force` enrolls a face that does not resemble the person's: an operator's (or admin's) decision."""
    if force and not caller.manages_galleries:
        raise ServiceError("forbidden", "Only operators and admins may use force=true.", status=403, field="force")


def check_scope(caller: Caller, name: str) -> None:
    """403 `gallery_out_of_scope` for a gallery outside an API key's scope, before any lookup."""
    if not caller.may_use_gallery(name):
        raise ServiceError(
            "gallery_out_of_scope", f"This API key may not use the gallery '{name}'.", status=403, gallery=name
        )


def _gallery_named(caller: Caller, name: str) -> Select[tuple[Gallery]]:
    """The caller's organisation's gallery named `name` (an API key: only within its scope, else 403)."""
    check_scope(caller, name)
    return select(Gallery).where(Gallery.organisation_id == caller.organisation_id, Gallery.name == name)


def find_gallery(session: Session, caller: Caller, name: str) -> Gallery | None:
    return session.execute(_gallery_named(caller, name)).scalar_one_or_none()


def get_or_create_gallery(session: Session, caller: Caller, name: str) -> tuple[Gallery, bool]:
    """The organisation's gallery named `name`, and whether this call created it."""
    gallery = find_gallery(session, caller, name)
    if gallery is not None:
        return gallery, False
    _refuse_a_case_twin(session, caller, name)
    gallery = Gallery(organisation_id=caller.organisation_id, owner_id=caller.id, name=name)
    session.add(gallery)
    session.flush()
    return gallery, True


def _refuse_a_case_twin(session: Session, caller: Caller, name: str) -> None:
    """A new gallery whose name differs from an existing one only in case ("Staff" beside "staff")
    is nearly always a typo that would split one gallery's persons in two: 409 naming the one."""
    twin = session.execute(
        select(Gallery.name).where(
            Gallery.organisation_id == caller.organisation_id,
            func.lower(Gallery.name) == name.lower(),
        )
    ).scalar()
    if twin is not None and caller.may_use_gallery(twin):
        raise ServiceError(
            "gallery_name_differs_in_case",
            f"Your organisation has a gallery named '{twin}'; gallery names are case-sensitive, and one "
            f"that differs only in case is refused: use '{twin}', or choose another name.",
            status=409,
            did_you_mean=twin,
        )


def require_gallery(session: Session, caller: Caller, name: str) -> Gallery:
    """The gallery, else 404 `gallery_not_found` with what to do: the name of the caller's gallery
    that differs only in case (`did_you_mean`), or, for the `default` that a request without
    `gallery` falls back on, to pass `gallery` or list the galleries."""
    gallery = find_gallery(session, caller, name)
    if gallery is None:
        raise _no_such_gallery(session, caller, name)
    return gallery


DEFAULT_GALLERY = "default"


def _no_such_gallery(session: Session, caller: Caller, name: str) -> NotFound:
    query = select(Gallery.name).where(Gallery.organisation_id == caller.organisation_id).order_by(Gallery.name)
    names = {n.casefold(): n for n in session.execute(query).scalars() if caller.may_use_gallery(n)}
    close = difflib.get_close_matches(name.casefold(), names, n=1, cutoff=0.75)
    if close:  # the same name in another case first (an exact casefold match scores 1.0)
        suggestion = names[close[0]]
        return NotFound(
            "gallery_not_found",
            f"Your organisation has no gallery named '{name}'; did you mean '{suggestion}'? "
            "Gallery names are case-sensitive.",
            did_you_mean=suggestion,
        )
    if name == DEFAULT_GALLERY:
        return NotFound(
            "gallery_not_found",
            "Your organisation has no gallery named 'default', the one used when no `gallery` is sent: "
            "pass `gallery` with the name of one of yours (GET /api/v1/galleries lists them).",
        )
    return NotFound(
        "gallery_not_found", f"Your organisation has no gallery named '{name}' (GET /api/v1/galleries lists yours)."
    )


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
    else:
        query = query.where(Person.account_id == caller.id)
    if caller.scoped:
        query = query.where(Gallery.name.in_(caller.galleries or ()))
    if with_faces:
        query = query.options(selectinload(Person.faces), selectinload(Person.gallery))
    return one_or_404(session, query, "person_not_found", "No such person.")


def visible_to(caller: Caller, model: type[Job] | type[Batch]) -> ColumnElement[bool]:
    """Admins and operators see their organisation's jobs and batches, users their own; a scoped
    API key only those of its galleries, and of the gallery-less jobs (a verification of two
    photos) those it submitted itself."""
    if caller.manages_galleries:
        condition = model.organisation_id == caller.organisation_id
    else:
        condition = model.owner_id == caller.id
    if caller.scoped:
        in_scope = model.gallery_id.in_(_scoped_galleries(caller))
        if model is Job:
            in_scope = in_scope | (Job.gallery_id.is_(None) & (Job.api_key_id == caller.api_key_id))
        condition = condition & in_scope
    return condition
