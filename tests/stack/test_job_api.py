"""Long-polling, listing, cancelling jobs, and the Prometheus metrics."""

from __future__ import annotations

import time

import pytest

from tests import images
from tests.conftest import bearer, login, make_account, stored_job, upload, wait_for_job


def _submit_recognition(client, headers) -> str:
    client.post(
        "/api/v1/persons",
        data={"name": "anchor", "consent": "true", "image": upload(images.tom_hanks())},
        headers=headers,
        content_type="multipart/form-data",
    )
    response = client.post(
        "/api/v1/recognize",
        data={"image": upload(images.group_photo())},
        headers=headers,
        content_type="multipart/form-data",
    )
    return response.get_json()["job_id"]


def test_long_poll_answers_when_the_job_ends(client, operator_headers, worker):
    job_id = _submit_recognition(client, operator_headers)
    started = time.monotonic()
    job = client.get(f"/api/v1/jobs/{job_id}?wait=30", headers=operator_headers).get_json()
    assert job["status"] == "succeeded"
    assert time.monotonic() - started < 25  # answered when done, not at the deadline


@pytest.mark.parametrize("wait", ["31", "-1", "soon"])
def test_long_poll_bounds(client, operator_headers, wait):
    job_id = _submit_recognition(client, operator_headers)
    assert client.get(f"/api/v1/jobs/{job_id}?wait={wait}", headers=operator_headers).status_code == 400


def test_jobs_are_listed_newest_first_with_filters(client, services):
    headers = bearer(login(client, *make_account("operator"))["access_token"])
    first = _submit_recognition(client, headers)
    second = _submit_recognition(client, headers)
    page = client.get("/api/v1/jobs?type=recognize&limit=1", headers=headers).get_json()
    assert [job["id"] for job in page["items"]] == [second]
    rest = client.get(f"/api/v1/jobs?type=recognize&limit=5&cursor={page['next_cursor']}", headers=headers)
    assert [job["id"] for job in rest.get_json()["items"]] == [first]
    enrolls = client.get("/api/v1/jobs?type=enroll", headers=headers).get_json()["items"]
    assert len(enrolls) == 2 and {job["type"] for job in enrolls} == {"enroll"}
    assert client.get("/api/v1/jobs?status=exploded", headers=headers).status_code == 400
    other = bearer(login(client, *make_account("operator"))["access_token"])
    assert client.get("/api/v1/jobs", headers=other).get_json()["items"] == []


def _unsent_job(client) -> tuple[str, dict]:
    """A queued job of a fresh operator that no worker will take (its message was never sent)."""
    import uuid

    from domain.db import session_scope

    headers = bearer(login(client, *make_account("operator"))["access_token"])
    me = client.get("/api/v1/auth/me", headers=headers).get_json()
    with session_scope() as session:
        return str(stored_job(session, uuid.UUID(me["id"])).id), headers


def test_a_queued_job_can_be_cancelled_once(client, services):
    job_id, headers = _unsent_job(client)
    response = client.delete(f"/api/v1/jobs/{job_id}", headers=headers)
    assert response.status_code == 200
    job = response.get_json()
    assert (job["status"], job["error"]["code"]) == ("failed", "cancelled")
    again = client.delete(f"/api/v1/jobs/{job_id}", headers=headers)
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "job_not_cancellable"


def test_a_long_poll_wakes_on_the_end_notice_not_on_its_timer(app, client, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from web import waiting

    monkeypatch.setattr(waiting, "FALLBACK_READ_SECONDS", 60.0)  # only the notice can wake it
    job_id, headers = _unsent_job(client)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(lambda: app.test_client().get(f"/api/v1/jobs/{job_id}?wait=20", headers=headers))
        time.sleep(1.0)  # let the long-poll subscribe
        assert not waiting.done()
        started = time.monotonic()
        assert client.delete(f"/api/v1/jobs/{job_id}", headers=headers).status_code == 200
        answer = waiting.result(timeout=30)
    assert answer.get_json()["error"]["code"] == "cancelled"
    assert time.monotonic() - started < 10  # long before the 20 s deadline


def test_a_long_poll_without_redis_still_answers_by_reading_the_row(app, client, monkeypatch):
    import redis

    from domain import notifications

    def unreachable(*_args, **_kwargs):
        raise redis.ConnectionError("Redis is down")

    job_id, headers = _unsent_job(client)
    monkeypatch.setattr(redis.Redis, "pubsub", unreachable)
    monkeypatch.setattr(notifications.redis.client.PubSub, "get_message", unreachable)
    started = time.monotonic()
    answer = client.get(f"/api/v1/jobs/{job_id}?wait=1.5", headers=headers)
    assert answer.status_code == 200
    assert answer.get_json()["status"] == "queued"
    assert time.monotonic() - started >= 1.4  # it waited out its time instead of failing


def _end_unannounced(job_id: str) -> None:
    """Fail the queued job in the database as a cancel does, without telling anyone (yet)."""
    import uuid

    from domain.db import session_scope
    from domain.errors import ServiceError
    from domain.jobs import finish
    from domain.models import JobStatus

    with session_scope() as session:
        cancelled = ServiceError("cancelled", "The job was cancelled.")
        assert finish(session, uuid.UUID(job_id), error=cancelled, only_from=JobStatus.queued)


def test_a_long_poll_on_an_ended_job_answers_at_once(client, services):
    job_id, headers = _unsent_job(client)
    _end_unannounced(job_id)
    started = time.monotonic()
    answer = client.get(f"/api/v1/jobs/{job_id}?wait=5", headers=headers)
    assert answer.get_json()["error"]["code"] == "cancelled"
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("end", ["announced", "announced, marker unreadable", "not announced"])
def test_a_job_that_ends_before_its_long_poll_subscribes_is_never_missed(client, services, monkeypatch, end):
    """An end between the long-poll's first read of the job and its subscription: an announced
    one is answered at once (its Redis marker, or the row read again when the marker cannot be
    checked), an unannounced one (a lost announce) at the next fallback read, never at the deadline."""
    import redis

    from domain import notifications
    from web import waiting

    fallback = 2.0
    monkeypatch.setattr(waiting, "FALLBACK_READ_SECONDS", fallback)
    job_id, headers = _unsent_job(client)

    class EndedFirst(notifications.JobEndListener):
        def __enter__(self):  # the first read is done: the job ends before the subscription
            _end_unannounced(job_id)
            if end.startswith("announced"):
                notifications.announce_job_ended(self.job_id)
            return super().__enter__()

    def exists(redis_self, *names):
        if any(str(name).startswith(notifications.ENDED_MARKER_PREFIX) for name in names):
            raise redis.ConnectionError("Redis is down")
        return plain_exists(redis_self, *names)

    plain_exists = redis.Redis.exists
    if end.endswith("unreadable"):
        monkeypatch.setattr(redis.Redis, "exists", exists)
    monkeypatch.setattr(waiting, "JobEndListener", EndedFirst)
    started = time.monotonic()
    answer = client.get(f"/api/v1/jobs/{job_id}?wait=20", headers=headers)
    seconds = time.monotonic() - started
    assert answer.get_json()["error"]["code"] == "cancelled"
    assert seconds < (1 if end.startswith("announced") else fallback + 3), seconds


def _recognize_tom(client, headers, wait: str):
    return client.post(
        f"/api/v1/recognize?wait={wait}",
        data={"image": upload(images.tom_hanks())},
        headers=headers,
        content_type="multipart/form-data",
    )


def test_a_submission_with_wait_answers_with_the_finished_job(client, operator_headers, worker):
    enrolled = client.post(
        "/api/v1/persons?wait=30",
        data={"name": "Tom", "consent": "true", "image": upload(images.tom_hanks())},
        headers=operator_headers,
        content_type="multipart/form-data",
    )
    assert enrolled.status_code == 200
    assert enrolled.get_json()["status"] == "succeeded"
    assert enrolled.get_json()["person_id"] == enrolled.get_json()["result"]["person_id"]
    response = _recognize_tom(client, operator_headers, wait="30")
    assert response.status_code == 200
    job = response.get_json()
    assert job["job_id"] == job["id"] and job["status"] == "succeeded"
    assert job["result"]["faces"][0]["matches"][0]["person_id"] == enrolled.get_json()["person_id"]
    assert job == {**client.get(f"/api/v1/jobs/{job['id']}", headers=operator_headers).get_json(), "job_id": job["id"]}


def test_a_submission_whose_job_outlasts_its_wait_is_accepted(client, services, monkeypatch):
    from web.services import submissions

    headers = bearer(login(client, *make_account("operator"))["access_token"])
    assert client.post("/api/v1/galleries", json={"name": "default"}, headers=headers).status_code == 201
    monkeypatch.setattr(submissions, "enqueue", lambda job_id, **options: None)  # stays queued: no worker sees it
    started = time.monotonic()
    response = _recognize_tom(client, headers, wait="1")
    assert response.status_code == 202
    assert set(response.get_json()) == {"job_id"}
    assert time.monotonic() - started >= 0.9
    assert client.delete(f"/api/v1/jobs/{response.get_json()['job_id']}", headers=headers).status_code == 200


def test_a_submission_with_a_bad_wait_leaves_no_job(client, services):
    headers = bearer(login(client, *make_account("operator"))["access_token"])
    response = _recognize_tom(client, headers, wait="31")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_field"
    assert client.get("/api/v1/jobs", headers=headers).get_json()["items"] == []


def test_metrics_expose_jobs_queue_and_durations(client, operator_headers, worker):
    job_id = _submit_recognition(client, operator_headers)
    wait_for_job(client, operator_headers, job_id)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'faceapi_jobs{status="succeeded",type="recognize"}' in text
    assert "faceapi_queue_depth" in text
    assert 'faceapi_job_duration_seconds_bucket{le="+Inf",type="recognize"}' in text


def test_a_finished_job_reports_where_its_time_went(client, operator_headers, worker):
    wait_for_job(client, operator_headers, _submit_recognition(client, operator_headers))  # the gallery exists
    response = client.post(
        "/api/v1/recognize",
        data={"image": upload(images.group_photo())},
        headers=operator_headers,
        content_type="multipart/form-data",
    )
    stages = dict(part.split(";dur=") for part in response.headers["Server-Timing"].split(", "))
    assert {"validate", "store", "enqueue", "total"} <= set(stages)
    assert float(stages["total"]) >= sum(float(stages[s]) for s in ("validate", "store", "enqueue"))
    job = wait_for_job(client, operator_headers, response.get_json()["job_id"])
    assert set(job["timings_ms"]) == {"claim", "decode", "detect", "embed", "search"}
    assert job["timings_ms"]["detect"] > 0
