"""Placeholders for services another change brings (merge, move): until they land the
console answers that the action is not available yet."""

from __future__ import annotations

from sqlalchemy.orm import Session

from domain.callers import Caller
from domain.errors import ServiceError
from web import services


def _missing(name: str) -> ServiceError:
    return ServiceError("not_available", f"This service ({name}) is not available yet.", status=501)


def move_face(session: Session, caller: Caller, person_id, face_id, target_id) -> None:
    if not hasattr(services, "move_face"):
        raise _missing("move_face")
    services.move_face(session, caller, person_id, face_id, target_id)


def merge_persons(session: Session, caller: Caller, source_id, target_id) -> None:
    if not hasattr(services, "merge_persons"):
        raise _missing("merge_persons")
    services.merge_persons(session, caller, source_id, target_id)
