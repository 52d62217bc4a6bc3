"""Idempotency keys with Stripe's semantics: the first request sent with a key is remembered with
a fingerprint of what it asked (route, fields, the sha256 of each file) and the answer it got. The
same key with the same fingerprint gets that answer again and creates nothing; with another
fingerprint it is refused (409 `idempotency_key_reused`). Keys are per account and kept
IDEMPOTENCY_KEY_HOURS (at least 24 hours).

The record is written in the same transaction as what the request creates: a request that fails
leaves no record, and a concurrent request with the same key waits on the record's unique key
until the first one commits, then gets its answer. That transaction also links the record to the
job or batch it commits (`link`: the answer, its status still unset): a request that dies later,
while it waits for its job, leaves a key whose retry answers that job.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from domain.errors import ServiceError
from domain.models import IdempotencyKey

MAX_KEY_LENGTH = 200


def fingerprint(route: str, fields: Iterable[tuple[str, str]], files: Iterable[tuple[str, str, str]]) -> str:
    """sha256 over the route, the form fields and each file part (field, file name, sha256 of bytes),
    sorted, so the order of the parts does not matter but every byte of every photo does."""
    digest = hashlib.sha256(route.encode())
    for name, value in sorted(fields):
        digest.update(b"\x00field\x00" + name.encode() + b"\x00" + value.encode())
    for name, filename, sha256 in sorted(files):
        digest.update(b"\x00file\x00" + name.encode() + b"\x00" + filename.encode() + b"\x00" + sha256.encode())
    return digest.hexdigest()


def check_key(raw: str) -> str:
    key = raw.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ServiceError(
            "invalid_idempotency_key",
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters (a UUID is a good choice).",
        )
    return key


def claim(session: Session, account_id: uuid.UUID, key: str, route: str, print_: str) -> IdempotencyKey | None:
    """The earlier request's record when this key was used before (same request), else None after
    adding this request's record to the session's transaction. Raises 409 for another request."""
    earlier = session.get(IdempotencyKey, (account_id, key))
    if earlier is None:
        record = IdempotencyKey(account_id=account_id, key=key, route=route, fingerprint=print_)
        try:
            with session.begin_nested():
                session.add(record)
                session.flush()  # waits for a concurrent request with this key to commit or roll back
            return None
        except IntegrityError:
            earlier = session.get(IdempotencyKey, (account_id, key), populate_existing=True)
    if earlier.fingerprint != print_:
        raise ServiceError(
            "idempotency_key_reused",
            "This Idempotency-Key was already used with a different request (another route, fields or "
            "files). Use a new key for a new request.",
            status=409,
        )
    if earlier.response_status is None and not earlier.response_body:
        raise ServiceError(
            "idempotency_key_in_use",
            "A request with this Idempotency-Key is still being processed; retry in a moment.",
            status=409,
        )
    return earlier


def link(session: Session, account_id: uuid.UUID, key: str, body: dict[str, Any]) -> None:
    """In the transaction that commits the request's job or batch: the answer it is going to give,
    which a retry gets even if the request never finishes (its status stays unset until `remember`,
    so `forget` still removes it if the request fails and undoes the job)."""
    session.execute(
        update(IdempotencyKey)
        .where(
            IdempotencyKey.account_id == account_id,
            IdempotencyKey.key == key,
            IdempotencyKey.response_status.is_(None),
        )
        .values(response_body=body)
    )


def remember(session: Session, account_id: uuid.UUID, key: str, status: int, body: dict[str, Any]) -> None:
    session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.account_id == account_id, IdempotencyKey.key == key)
        .values(response_status=status, response_body=body)
    )


def forget(session: Session, account_id: uuid.UUID, key: str) -> None:
    """A request that failed after committing (e.g. the queue was down) may be retried with its key."""
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.account_id == account_id,
            IdempotencyKey.key == key,
            IdempotencyKey.response_status.is_(None),
        )
    )


def purge(session: Session, created_before: datetime) -> int:
    return session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < created_before)).rowcount
