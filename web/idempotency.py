"""`Idempotency-Key` on every POST that creates something (domain/idempotency.py has the rules).

A view decorated with `@idempotent` (below `roles_required`, so the caller is known) answers a
retry of the same request with the first answer, and a different request under the same key
with 409. A submission's first answer is remembered as its 202 body (`accepted` puts it in
`g.accepted_body`): a retry with `?wait=N` waits for the same job again and answers it fresh.

The key is linked to the job (or batch) in the very transaction that commits it: a request that
dies after that (a web process killed during `?wait=30`) leaves a key whose retry answers that
job, never 409 `idempotency_key_in_use` (domain.idempotency.claim).
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any

from flask import g, make_response, request
from flask_jwt_extended import current_user
from sqlalchemy import event
from sqlalchemy.orm import Session

from domain import idempotency
from domain.models import Batch, Job, Person
from web.db import get_session
from web.validation import validated_part

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


def _replay(record, view: Callable) -> Any:
    """The first answer again: a waiting submission waits for its job afresh. The retry's query
    is validated first, by the view's own schema (a bad `wait` is the same 400 as on a first try)."""
    from web.waiting import accepted, submitted

    query = validated_part(view, "query")
    wait = getattr(query, "wait", 0)
    body = record.response_body or {}
    job = get_session().get(Job, uuid.UUID(body["job_id"])) if wait > 0 and body.get("job_id") else None
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


def _first_answer(created: dict[type, Any]) -> dict[str, Any] | None:
    """The 202 body the view answers for what its transaction created (web/persons.py,
    recognize.py, enrollments.py...): a batch's id and size, else the job's id, with the person's
    first when the job enrolls a person created with it."""
    if (batch := created.get(Batch)) is not None:
        return {"batch_id": str(batch.id), "total": batch.total}
    if (job := created.get(Job)) is None:
        return None
    person = created.get(Person)
    if person is not None and job.person_id == person.id:
        return {"person_id": str(person.id), "job_id": str(job.id)}
    return {"job_id": str(job.id)}


@contextlib.contextmanager
def _linked_to_what_commits(session: Session, account_id: uuid.UUID, key: str) -> Iterator[None]:
    """While the view runs, every commit that writes its job or batch also writes the key's link."""
    created: dict[type, Any] = {}

    def note(_session: Session, instance: Any) -> None:
        if isinstance(instance, (Batch, Job, Person)):
            created.setdefault(type(instance), instance)

    def link(committing: Session) -> None:
        committing.flush()  # the commit's own flush, early: its new rows are noted first
        if (body := _first_answer(created)) is not None:
            idempotency.link(committing, account_id, key, body)

    event.listen(session, "pending_to_persistent", note)
    event.listen(session, "before_commit", link)
    try:
        yield
    finally:
        event.remove(session, "pending_to_persistent", note)
        event.remove(session, "before_commit", link)


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
            return _replay(earlier, view)
        try:
            with _linked_to_what_commits(session, account_id, key):
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
