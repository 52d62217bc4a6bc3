"""Who may see what: the caller's organisation's galleries (an API key: its scope), persons, jobs and batches."""

from __future__ import annotations

import uuid
from typing import TypeVar

from sqlalchemy import ColumnElement, Select, select
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


def _in_scope(caller: Caller, name: str) -> None:
    if not caller.may_use_gallery(name):
        raise ServiceError(
            "gallery_out_of_scope", f"This API key may not use the gallery '{name}'.", status=403, gallery=name
        )


def _gallery_named(caller: Caller, name: str) -> Select[tuple[Gallery]]:
    """The caller's organisation's gallery named `name` (an API key: only within its scope, else 403)."""
    _in_scope(caller, name)
    return select(Gallery).where(Gallery.organisation_id == caller.organisation_id, Gallery.name == name)


def find_gallery(session: Session, caller: Caller, name: str) -> Gallery | None:
    return session.execute(_gallery_named(caller, name)).scalar_one_or_none()


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
    return one_or_404(
        session, _gallery_named(caller, name), "gallery_not_found", f"Your organisation has no gallery named '{name}'."
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
        if caller.galleries is not None:
            query = query.where(Gallery.name.in_(caller.galleries))
    else:
        query = query.where(Person.account_id == caller.id)
    if with_faces:
        query = query.options(selectinload(Person.faces), selectinload(Person.gallery))
    return one_or_404(session, query, "person_not_found", "No such person.")


def visible_to(caller: Caller, model: type[Job] | type[Batch]) -> ColumnElement[bool]:
    """Admins and operators see their organisation's jobs and batches (an API key: those of its
    galleries); users see their own."""
    if not caller.manages_galleries:
        return model.owner_id == caller.id
    condition = model.organisation_id == caller.organisation_id
    if caller.galleries is not None:
        condition = condition & model.gallery_id.in_(_scoped_galleries(caller))
    return condition
