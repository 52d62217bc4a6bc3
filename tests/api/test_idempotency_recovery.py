"""An Idempotency-Key whose request died after its job was committed (a web process killed while it
waited with `?wait=30`) answers its retry with that job, not 409 `idempotency_key_in_use` for the
key's 48 hours, and never makes a second job."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

import web.waiting
from domain import idempotency
from domain.models import Job, Person
from tests import images
from tests.conftest import upload


class ProcessKilled(BaseException):
    """Where the process died: nothing after this point runs (no rollback, no `forget`)."""


def _die(*_args, **_kwargs):
    raise ProcessKilled


def _count(db, model) -> int:
    db.rollback()
    return db.execute(select(func.count()).select_from(model)).scalar_one()


def _enroll(client, headers: dict, key: str, photo: bytes, wait: int = 0):
    return client.post(
        f"/api/v1/persons?wait={wait}",
        data={"name": "Waiting Person", "consent": "true", "image": upload(photo, filename="face.jpg")},
        headers={**headers, "Idempotency-Key": key},
        content_type="multipart/form-data",
    )


def test_a_retry_after_the_request_died_while_waiting_answers_its_job(client, operator_headers, db, monkeypatch):
    photo = images.distinct_copy(images.tom_hanks(), "stranded-key")
    key = str(uuid.uuid4())
    jobs_before, persons_before = _count(db, Job), _count(db, Person)
    with monkeypatch.context() as dying:
        dying.setattr(web.waiting, "wait_until_ended", _die)  # killed during the wait...
        dying.setattr(idempotency, "forget", lambda *args, **kwargs: None)  # ...so nothing is undone
        with pytest.raises(ProcessKilled):
            _enroll(client, operator_headers, key, photo, wait=30)
    assert (_count(db, Job), _count(db, Person)) == (jobs_before + 1, persons_before + 1)  # the job was committed
    db.rollback()
    job = db.execute(select(Job).order_by(Job.created_at.desc()).limit(1)).scalar_one()

    retry = _enroll(client, operator_headers, key, photo)
    assert retry.status_code == 202, retry.get_data(as_text=True)
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.get_json() == {"person_id": str(job.person_id), "job_id": str(job.id)}

    waiting_retry = _enroll(client, operator_headers, key, photo, wait=1)  # no worker here: still queued
    assert waiting_retry.status_code == 202
    assert waiting_retry.get_json()["job_id"] == str(job.id)
    assert (_count(db, Job), _count(db, Person)) == (jobs_before + 1, persons_before + 1)
