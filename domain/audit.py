"""The audit log: who enrolled, recognized, deleted or exported what, and when."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from domain.callers import Caller
from domain.models import Account, AuditEvent


def record(
    session: Session,
    actor: Caller | Account | None,
    action: str,
    target_type: str | None = None,
    target_id: object | None = None,
    **details: Any,
) -> None:
    """Add an event to the caller's transaction, so it is stored exactly when the action is. An
    API key's use is attributed to the key (and the account that created it)."""
    session.add(
        AuditEvent(
            actor_id=actor.id if actor else None,
            actor_email=actor.email if actor else None,
            organisation_id=actor.organisation_id if actor else None,
            api_key_id=getattr(actor, "api_key_id", None),
            action=action,
            target_type=target_type,
            target_id=str(target_id) if target_id is not None else None,
            details=details,
        )
    )
