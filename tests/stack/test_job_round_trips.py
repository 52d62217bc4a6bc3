"""A job costs few database statements around the model (web and worker CPU a job).

The claim returns the job and its photo in one `UPDATE ... RETURNING` (no SELECT ... FOR UPDATE,
no second read of the photo, no re-read of the row in the run's transaction), and the end is one
UPDATE that stores the outcome and drops the photo. bench/overhead.py measures the same live.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from domain.db import get_engine, session_scope
from domain.models import Account, Job, JobStatus
from tests import images
from tests.conftest import make_account, stored_job, upload


@contextlib.contextmanager
def _listening(target, name: str, listener) -> Iterator[None]:
    event.listen(target, name, listener)
    try:
        yield
    finally:
        event.remove(target, name, listener)


def _recognize(client, headers, query: str = ""):
    form = {"image": upload(images.tom_hanks())}
    return client.post(f"/api/v1/recognize{query}", data=form, headers=headers, content_type="multipart/form-data")


def _enroll_anchor(client, headers) -> None:
    form = {"name": "anchor", "consent": "true", "image": upload(images.tom_hanks())}
    response = client.post("/api/v1/persons", data=form, headers=headers, content_type="multipart/form-data")
    assert response.status_code == 202


def test_a_run_claims_with_its_photo_and_ends_in_one_statement_each(services, monkeypatch):
    from config import get_settings
    from workers import pipeline
    from workers.context import WorkerContext

    email, _ = make_account("operator")
    with session_scope() as session:
        owner = session.execute(select(Account.id).where(Account.email == email)).scalar_one()
        job_id = stored_job(session, owner, image=b"the photo").id
    handed: list[bytes | None] = []

    def run(session, job, image, second_image, timer, context):
        handed.append(image)
        assert job.id == job_id and job.status is JobStatus.running
        return {"faces": []}

    statements: list[str] = []

    def record(_conn, _cursor, statement: str, *_args) -> None:
        statements.append(statement.split(None, 1)[0].upper())

    monkeypatch.setattr(pipeline, "_run", run)
    monkeypatch.setattr(pipeline, "announce_job_ended", lambda _job_id: None)
    with _listening(get_engine(), "before_cursor_execute", record):
        pipeline.process_job(str(job_id), WorkerContext(get_settings(), engine=None))  # `_run` is replaced
    assert handed == [b"the photo"]
    assert statements == ["UPDATE", "UPDATE"]  # the claim (RETURNING the photo), the end
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job.status is JobStatus.succeeded and job.input_image is None


def test_an_unknown_or_finished_job_is_not_claimed(services):
    from domain import jobs

    with session_scope() as session:
        assert jobs.claim_with_inputs(session, uuid.uuid4()) is None
    email, _ = make_account("operator")
    with session_scope() as session:
        owner = session.execute(select(Account.id).where(Account.email == email)).scalar_one()
        job_id = stored_job(session, owner).id
    with session_scope() as session:
        claimed, image, second = jobs.claim_with_inputs(session, job_id)
        assert (claimed.status, image, second) == (JobStatus.running, b"x", None)
        jobs.finish(session, job_id, result={"faces": []})
    with session_scope() as session:
        assert jobs.claim_with_inputs(session, job_id) is None
        assert session.get(Job, job_id).status is JobStatus.succeeded


def test_a_request_with_an_access_token_reads_its_account_once(client, operator_headers):
    """The revocation check and the user lookup share the row (read afresh on every request)."""
    reads: list[str] = []

    def record(_conn, _cursor, statement: str, *_args) -> None:
        if "FROM accounts" in statement:
            reads.append(statement)

    with _listening(get_engine(), "before_cursor_execute", record):
        for _ in range(2):
            assert client.get("/api/v1/auth/me", headers=operator_headers).status_code == 200
    assert len(reads) == 2  # one a request


def test_the_waits_of_one_thread_share_one_redis_connection(services):
    """A `?wait` subscribes on the thread's kept connection (no TCP connect and handshake a
    request), and is woken by its own job's notice only, not by an earlier wait's."""
    from domain.notifications import JobEndListener, announce_job_ended, redis_client

    def connections_made() -> int:
        return redis_client().info("stats")["total_connections_received"]

    with JobEndListener(uuid.uuid4()) as listener:  # this thread's subscriber exists from here on
        listener.wait(0.01)
    before = connections_made()
    for _ in range(3):
        job_id = uuid.uuid4()
        with JobEndListener(job_id) as listener:
            announce_job_ended(job_id)
            started = time.monotonic()
            listener.wait(5)
            assert time.monotonic() - started < 2  # woken by the notice
    assert connections_made() == before
    earlier = uuid.uuid4()
    with JobEndListener(earlier):
        announce_job_ended(earlier)  # never read by its wait: still on the connection
    with JobEndListener(uuid.uuid4()) as listener:
        started = time.monotonic()
        listener.wait(0.3)
        assert time.monotonic() - started >= 0.3


def test_a_waited_submission_reads_its_job_once(client, operator_headers, worker, monkeypatch):
    """A `?wait=30` recognition reads its job's row once, when the end notice wakes it: whether
    the job ended before the wait subscribed is the job's Redis marker (one EXISTS), not a second
    read of the row (a pool checkout with its pre-ping, BEGIN, SELECT, COMMIT: about 3 ms of web
    CPU and 1 ms of PostgreSQL's a waited job, PERFORMANCE.md section 9, round 4)."""
    from web import waiting

    monkeypatch.setattr(waiting, "FALLBACK_READ_SECONDS", 60.0)  # no timer's read: only the notice wakes it
    assert client.post("/api/v1/galleries", json={"name": "default"}, headers=operator_headers).status_code == 201
    job_reads: list[str] = []

    def record(_conn, _cursor, statement: str, *_args) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM jobs" in statement:
            job_reads.append(statement)

    with _listening(get_engine(), "before_cursor_execute", record):
        response = _recognize(client, operator_headers, "?wait=30")
    assert response.status_code == 200 and response.get_json()["status"] == "succeeded", response.get_json()
    assert len(job_reads) == 1, job_reads


def test_a_submission_writes_its_rows_in_one_flush(client, operator_headers):
    """The job and its audit row go to the database together (the budget check's autoflush), not
    in two flushes (one more ORM flush cycle, about a millisecond of web CPU a submission)."""
    _enroll_anchor(client, operator_headers)
    flushes: list[int] = []

    def record(session, _context) -> None:
        flushes.append(len(session.new))

    with _listening(Session, "after_flush", record):
        response = _recognize(client, operator_headers)
    assert response.status_code == 202
    assert flushes == [2]  # one flush: the job and its audit row


def test_a_submission_checks_its_budget_in_one_statement(client, operator_headers):
    """A recognition runs 5 statements: the account, the gallery, the job and audit INSERTs (one
    flush), and the budget check, which locks the organisation's row and sums its outstanding costs
    in one call (`lock_organisation_outstanding_cost`, migration 0012), not two SELECTs: each ORM
    statement is about a millisecond of web CPU (PERFORMANCE.md section 9, round 4)."""
    _enroll_anchor(client, operator_headers)
    statements: list[str] = []

    def record(_conn, _cursor, statement: str, *_args) -> None:
        statements.append(" ".join(statement.split()[:4]))

    with _listening(get_engine(), "before_cursor_execute", record):
        response = _recognize(client, operator_headers)
    assert response.status_code == 202
    verbs = [statement.split()[0] for statement in statements]
    assert verbs == ["SELECT", "SELECT", "INSERT", "INSERT", "SELECT"], statements
    assert "lock_organisation_outstanding_cost" in statements[-1], statements


def test_a_submission_opens_its_photo_only_to_validate_it(client, operator_headers, monkeypatch):
    """The job's cost comes from the size the upload validation read (domain/budget.job_cost), not
    from opening the photo again with Pillow."""
    from PIL import Image

    import web.forms

    validating, opened_elsewhere = [False], []
    validate, open_image = web.forms.validate_image, Image.open

    def validate_image(*args, **kwargs):
        validating[0] = True
        try:
            return validate(*args, **kwargs)
        finally:
            validating[0] = False

    def opened(*args, **kwargs):
        if not validating[0]:
            opened_elsewhere.append(args)
        return open_image(*args, **kwargs)

    monkeypatch.setattr(web.forms, "validate_image", validate_image)
    monkeypatch.setattr(Image, "open", opened)
    form = {"image_a": upload(images.tom_hanks()), "image_b": upload(images.tom_hanks())}
    response = client.post("/api/v1/verify", data=form, headers=operator_headers, content_type="multipart/form-data")
    assert response.status_code == 202, response.get_json()
    assert opened_elsewhere == []
