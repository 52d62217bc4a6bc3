"""Where a person comes into being: every route that creates one (an enrollment, a batch, the
caller's own profile, an unknown enrolled as a person, a gallery import) builds it here, so the
consent record a person must carry is set the same way everywhere."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from domain.jobs import now
from domain.models import Person


def new_person(
    session: Session,
    gallery_id: uuid.UUID,
    name: str,
    *,
    consent_by_id: uuid.UUID | None,
    consent_at: datetime | None = None,
    external_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    account_id: uuid.UUID | None = None,
) -> Person:
    """A new person of the gallery, added to the session (not flushed). Its consent was recorded
    now by `consent_by_id` (the caller who asserted it), or at `consent_at` where it was recorded
    elsewhere (an imported archive's, whose recorder was no account of this deployment: None).
    `account_id` links the person to the account it is (the caller's own profile face)."""
    person = Person(
        id=uuid.uuid4(),
        gallery_id=gallery_id,
        name=name,
        external_id=external_id,
        account_id=account_id,
        consent_at=consent_at or now(),
        consent_by_id=consent_by_id,
    )
    if metadata is not None:
        person.meta = metadata
    session.add(person)
    return person
