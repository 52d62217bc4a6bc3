"""API keys: service accounts of an organisation, for integrators' code.

A key is `fk_<prefix>_<secret>`: the prefix (8 hex digits) names it in lists and logs, the
secret (43 URL-safe characters, 256 bits) is shown once and stored only as its sha256, so a
database leak does not leak usable keys. sha256 rather than bcrypt: the secret has full
entropy, and every request is checked with one indexed lookup.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from domain.callers import RANK, Caller
from domain.errors import NotFound, ServiceError
from domain.jobs import iso, now
from domain.models import Account, ApiKey, Organisation, Role

PREFIX = "fk_"  # also how web/extensions.presented_api_key tells a key from a JWT
# last_used_at is written at most this often per key, not on every request.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create(
    session: Session,
    caller: Caller,
    *,
    name: str,
    role: Role,
    galleries: list[str] | None,
    expires_at: datetime | None,
    max_keys: int,
) -> tuple[ApiKey, str]:
    """A new key of the caller's organisation, and its secret (never stored, never shown again).
    A key cannot hold more than its creator: neither a higher role nor galleries outside its scope;
    an organisation holds at most `max_keys` (409 `api_key_limit`)."""
    if RANK[role] > RANK[caller.role]:
        raise ServiceError("forbidden", "A key cannot have a higher role than its creator.", status=403)
    if caller.galleries is not None and (galleries is None or not set(galleries) <= caller.galleries):
        raise ServiceError("forbidden", "A key cannot reach galleries its creator cannot.", status=403)
    if expires_at is not None and expires_at <= now():
        raise ServiceError("invalid_field", "expires_at must be in the future.")
    _ensure_room_for_a_key(session, caller.organisation_id, max_keys)
    prefix = secrets.token_hex(4)
    raw = f"{PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(
        id=uuid.uuid4(),
        organisation_id=caller.organisation_id,
        created_by_id=caller.id,
        name=name,
        role=role,
        galleries=sorted(set(galleries)) if galleries is not None else None,
        prefix=prefix,
        key_hash=digest(raw),
        expires_at=expires_at,
    )
    session.add(key)
    session.flush()
    return key, raw


def _ensure_room_for_a_key(session: Session, organisation_id: uuid.UUID, max_keys: int) -> None:
    """Each key has a rate-limit bucket of its own: the cap bounds an organisation's request rate.
    The organisation's row is locked, so that two creations at once cannot both take the last place.
    Expired keys count until they are revoked (they are listed, and revoking them frees a place)."""
    session.execute(select(Organisation.id).where(Organisation.id == organisation_id).with_for_update())
    held = session.execute(select(func.count()).where(ApiKey.organisation_id == organisation_id)).scalar_one()
    if held >= max_keys:
        raise ServiceError(
            "api_key_limit",
            f"Your organisation already has {held} API keys, the most it may hold (API_KEYS_MAX_PER_ORGANISATION="
            f"{max_keys}): revoke one it no longer uses (DELETE /api/v1/api-keys/{{key_id}}).",
            status=409,
        )


def authenticate(session: Session, raw: str) -> tuple[ApiKey, Account] | None:
    """The live key for this secret (not revoked, not expired) with its creator as the creator is
    now (a key never acts above its creator's current role: domain/callers.py), or None; one query."""
    found = session.execute(
        select(ApiKey, Account).join(Account, Account.id == ApiKey.created_by_id).where(ApiKey.key_hash == digest(raw))
    ).one_or_none()
    if found is None:
        return None
    key, creator = found
    if key.expires_at is not None and key.expires_at <= now():
        return None
    if key.last_used_at is None or now() - key.last_used_at > LAST_USED_RESOLUTION:
        session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now()))
        session.commit()
    return key, creator


def list_keys(session: Session, caller: Caller) -> list[dict[str, Any]]:
    query = select(ApiKey).where(ApiKey.organisation_id == caller.organisation_id).order_by(ApiKey.created_at)
    return [document(key) for key in session.execute(query).scalars()]


def revoke(session: Session, caller: Caller, key_id: uuid.UUID) -> None:
    """Delete the key: the next request with it is refused (keys are looked up on every request)."""
    deleted = session.execute(
        delete(ApiKey).where(ApiKey.id == key_id, ApiKey.organisation_id == caller.organisation_id)
    )
    if deleted.rowcount != 1:
        raise NotFound("api_key_not_found", "No such API key.")


def document(key: ApiKey) -> dict[str, Any]:
    return {
        "id": str(key.id),
        "name": key.name,
        "role": key.role.value,
        "galleries": key.galleries,
        "prefix": f"{PREFIX}{key.prefix}",
        "created_by": str(key.created_by_id),
        "created_at": iso(key.created_at),
        "expires_at": iso(key.expires_at),
        "last_used_at": iso(key.last_used_at),
    }
