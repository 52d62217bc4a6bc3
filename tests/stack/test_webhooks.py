"""Signed webhooks: delivered after retries with one delivery id; SSRF guard; secret rotation."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tests import images
from tests.conftest import enroll, free_port, upload, wait_for_job


class Receiver:
    """A local HTTP receiver answering the scripted statuses in turn (then 200)."""

    def __init__(self, statuses: list[int]):
        self.statuses = list(statuses)
        self.requests: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"got {len(self.requests)} of {count} deliveries"
            time.sleep(0.05)

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture()
def receiver():
    made = []

    def make(statuses):
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for item in made:
        item.close()


def _verify(secret: str, headers: dict, body: bytes) -> bool:
    expected = hmac.new(secret.encode(), headers["X-FaceAPI-Timestamp"].encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(headers["X-FaceAPI-Signature"], "sha256=" + expected.hexdigest())


def test_delivery_is_retried_until_accepted_and_signed(client, operator_headers, worker, receiver):
    hook = receiver([500, 500, 200])
    secret = client.get("/api/v1/webhooks/secret", headers=operator_headers).get_json()["secret"]
    enrolled = enroll(client, operator_headers, images.tom_hanks(), "Tom", webhook_url=hook.url)
    hook.wait_for(3)
    ids = {headers["X-FaceAPI-Delivery"] for headers, _ in hook.requests}
    assert len(ids) == 1  # one delivery, retried
    for headers, body in hook.requests:
        assert headers["X-FaceAPI-Event"] == "job.succeeded"
        assert _verify(secret, headers, body)
        assert json.loads(body)["id"] == enrolled["job_id"]
    job = wait_for_job(client, operator_headers, enrolled["job_id"])
    deadline = time.monotonic() + 10
    while len(job["webhook"]["deliveries"]) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
        job = client.get(f"/api/v1/jobs/{enrolled['job_id']}", headers=operator_headers).get_json()
    assert [d["status_code"] for d in job["webhook"]["deliveries"]] == [500, 500, 200]
    assert [d["attempt"] for d in job["webhook"]["deliveries"]] == [1, 2, 3]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'faceapi_webhook_attempts{outcome="delivered"}' in metrics
    assert 'faceapi_webhook_attempts{outcome="rejected"}' in metrics


def test_redeliver_and_rotated_secret(client, operator_headers, admin_headers, worker, receiver):
    hook = receiver([])
    enrolled = enroll(client, operator_headers, images.no_face_photo(), "Nobody", webhook_url=hook.url)
    hook.wait_for(1)
    assert hook.requests[0][0]["X-FaceAPI-Event"] == "job.failed"
    # The organisation's secret: only its admin rotates it.
    assert client.post("/api/v1/webhooks/secret/rotate", headers=operator_headers).status_code == 403
    new_secret = client.post("/api/v1/webhooks/secret/rotate", headers=admin_headers).get_json()["secret"]
    again = client.post(f"/api/v1/jobs/{enrolled['job_id']}/redeliver", headers=operator_headers)
    assert again.status_code == 202
    hook.wait_for(2)
    headers, body = hook.requests[1]
    assert headers["X-FaceAPI-Delivery"] == again.get_json()["delivery_id"]
    assert headers["X-FaceAPI-Delivery"] != hook.requests[0][0]["X-FaceAPI-Delivery"]
    assert _verify(new_secret, headers, body)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/hook",
        "http://192.168.0.10:8080/hook",
        "http://[::1]/hook",
        "http://user:pw@example.com/hook",
        "http://0.0.0.0/hook",
        "not a url",
    ],
)
def test_webhook_urls_to_internal_addresses_are_refused(client, operator_headers, db, url):
    from sqlalchemy import func, select

    from domain.models import Job

    before = db.execute(select(func.count()).select_from(Job)).scalar_one()
    response = client.post(
        "/api/v1/recognize",
        data={"image": upload(images.tom_hanks()), "webhook_url": url},
        headers=operator_headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_webhook_url"
    db.rollback()
    assert db.execute(select(func.count()).select_from(Job)).scalar_one() == before


def test_redeliver_needs_a_webhook(client, operator_headers, worker):
    enrolled = enroll(client, operator_headers, images.tom_hanks(), "Tom")
    wait_for_job(client, operator_headers, enrolled["job_id"])
    response = client.post(f"/api/v1/jobs/{enrolled['job_id']}/redeliver", headers=operator_headers)
    assert response.status_code == 409
