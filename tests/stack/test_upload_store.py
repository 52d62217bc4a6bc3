"""UPLOAD_STORE=redis: a queued job's photos wait in Redis, not in its row (no WAL for them); they
are erased when the job ends; a photo lost with its Redis host ends its job `input_missing`."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from sqlalchemy import select

from domain import uploads
from domain.db import session_scope
from domain.models import Account, Job
from domain.notifications import redis_client
from tests import images
from tests.conftest import enroll, make_account, override_settings, stored_job, upload, wait_for_job

pytestmark = pytest.mark.usefixtures("worker")
MULTIPART = "multipart/form-data"
LARGE = images.another_photo(images.group_photo(), scale=3.0)  # a few hundred kB


def _wal_bytes(db) -> int:
    url = db.get_bind().url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as conn:
        return int(conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')").fetchone()[0])


def _recognized(client, headers, db) -> tuple[dict, int]:
    before = _wal_bytes(db)
    response = client.post(
        "/api/v1/recognize?wait=30", data={"image": upload(LARGE)}, headers=headers, content_type=MULTIPART
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json(), _wal_bytes(db) - before


def test_in_redis_the_photo_skips_the_wal_gives_the_same_result_and_is_erased_at_the_end(client, operator_headers, db):
    enrolled = enroll(client, operator_headers, images.tom_hanks(), "Tom Hanks")
    assert wait_for_job(client, operator_headers, enrolled["job_id"])["status"] == "succeeded"
    in_row, wal_in_row = _recognized(client, operator_headers, db)
    with override_settings(UPLOAD_STORE="redis"):
        in_redis, wal_in_redis = _recognized(client, operator_headers, db)

    assert in_redis["status"] == in_row["status"] == "succeeded"
    assert [f["bbox"] for f in in_redis["result"]["faces"]] == [f["bbox"] for f in in_row["result"]["faces"]]
    assert wal_in_row > len(LARGE) > 2 * wal_in_redis  # the photo went through the WAL only in the row
    job_id = uuid.UUID(in_redis["id"])
    assert uploads.take(redis_client(), job_id) == (None, None)  # erased when the job ended
    assert db.execute(select(Job.input_image).where(Job.id == job_id)).scalar_one() is None


def test_a_photo_lost_with_its_redis_host_ends_its_job_input_missing(services):
    from config import get_settings
    from workers import pipeline
    from workers.context import WorkerContext

    email, _ = make_account("operator")
    with session_scope() as session:
        owner = session.execute(select(Account.id).where(Account.email == email)).scalar_one()
        job_id = stored_job(session, owner, image=None, params={"upload": uploads.REDIS, "max_faces": 5}).id
    # Queued with its photo in Redis, which then lost it (its host died; appendonly kept nothing).
    uploads.put(redis_client(), job_id, LARGE, None, ttl=60)
    uploads.drop(redis_client(), job_id)

    error = pipeline.process_job(str(job_id), WorkerContext.of(get_settings()))

    assert error is not None and error.code == "input_missing"
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert (job.status.value, job.error["code"]) == ("failed", "input_missing")


def test_a_cancelled_job_keeps_no_byte_of_its_photo(client, operator_headers, operator_account):
    with session_scope() as session:
        owner = session.execute(select(Account.id).where(Account.email == operator_account[0])).scalar_one()
        job_id = stored_job(session, owner, image=None, params={"upload": uploads.REDIS, "max_faces": 5}).id
    uploads.put(redis_client(), job_id, LARGE, None, ttl=60)

    response = client.delete(f"/api/v1/jobs/{job_id}", headers=operator_headers)

    assert response.status_code == 200 and response.get_json()["error"]["code"] == "cancelled"
    assert uploads.take(redis_client(), job_id) == (None, None)
