"""`Idempotency-Key` on every POST that creates something (domain/idempotency.py has the rules).

A view decorated with `@idempotent` (below `roles_required`, so the caller is known) answers a
retry of the same request with the first answer, and a different request under the same key
with 409. A submission's first answer is remembered as its 202 body (`accepted` puts it in
`g.accepted_body`): a retry with `?wait=N` waits for the same job again and answers it fresh.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import g, make_response, request
from flask_jwt_extended import current_user

from domain import idempotency
from domain.models import Job
from web.db import get_session

HEADER = "Idempotency-Key"


def _file_sha256(storage) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: storage.stream.read(1 << 20), b""):
        digest.update(chunk)
    storage.stream.seek(0)
    return digest.hexdigest()


def request_fingerprint() -> str:
    route = f"{request.method} {request.path}"
    fields = [(name, value) for name, values in request.form.lists() for value in values]
    files = [
        (name, storage.filename or "", _file_sha256(storage))
        for name, storages in request.files.lists()
        for storage in storages
    ]
    return idempotency.fingerprint(route, fields, files)


def _replay(record) -> Any:
    """The first answer again: a waiting submission waits for its job afresh."""
    from web.waiting import accepted, submitted, wait_seconds

    body = record.response_body or {}
    wait = wait_seconds()
    job = get_session().get(Job, body["job_id"]) if wait > 0 and body.get("job_id") else None
    response, status = accepted(job, body, wait) if job is not None else submitted(body)
    response.headers["Idempotent-Replayed"] = "true"
    return response, status


def _scoped(key: str) -> tuple[uuid.UUID, str]:
    """(account, key) under which a key is remembered: keys are per caller, and an API key is a
    caller of its own (its creator's password login must not share its keys)."""
    caller = g.get("caller")
    if caller is None:  # a route about the logged-in account itself (/auth/me/face)
        return current_user.id, key
    if caller.api_key_id is None:
        return caller.id, key
    return caller.id, "api-key:" + hashlib.sha256(f"{caller.api_key_id}:{key}".encode()).hexdigest()


def idempotent(view: Callable) -> Callable:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any):
        raw = request.headers.get(HEADER)
        if raw is None:
            return view(*args, **kwargs)
        session = get_session()
        account_id, key = _scoped(idempotency.check_key(raw))
        earlier = idempotency.claim(session, account_id, key, request.path, request_fingerprint())
        if earlier is not None:
            return _replay(earlier)
        try:
            response = make_response(view(*args, **kwargs))
        except BaseException:
            session.rollback()
            idempotency.forget(session, account_id, key)
            session.commit()
            raise
        if 200 <= response.status_code < 300 and "accepted_body" in g:
            idempotency.remember(session, account_id, key, 202, g.accepted_body)
        else:
            idempotency.forget(session, account_id, key)
        session.commit()
        return response

    wrapper.submits_job = True  # read by web/errors.py: a submission's Redis outage is `queue_unavailable`
    return wrapper
