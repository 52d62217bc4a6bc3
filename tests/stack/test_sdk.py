"""The Python SDK (clients/python, `faceapi_client`) against the real stack over real HTTP: tokens
that refresh by themselves, typed errors, 429s waited out, submit-and-wait and long-polls, signed
webhooks, API keys, and a batch enrollment interrupted and resumed without enrolling anything twice.
The retry rules are also checked without a server, on a mock transport."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import timedelta

import httpx
import pytest

from tests import images
from tests.conftest import make_account, override_settings

faceapi_client = pytest.importorskip(
    "faceapi_client", reason="the SDK is not installed: .venv/bin/pip install -e clients/python"
)
from faceapi_client import (  # noqa: E402
    AuthenticationError,
    Conflict,
    FaceAPI,
    JobFailed,
    NotFound,
    TransportError,
    WebhookVerificationError,
    models,
    sign_webhook,
    verify_webhook,
)
from faceapi_client.enroll import EnrollItem, EnrollState, enroll_photos  # noqa: E402

TOM = images.tom_hanks()
GROUP = images.group_photo()
# Single faces cut out of the group photo (t1.jpg): each a different person.
FACE_0 = images.crop(GROUP, (0, 170, 260, 490))
FACE_2 = images.crop(GROUP, (400, 180, 640, 500))


@pytest.fixture()
def operator(server):
    email, password = make_account("operator")
    with FaceAPI(server.url, email=email, password=password, timeout=30) as api:
        yield api


class Recorder:
    """Every request and answer the client exchanges (httpx event hooks)."""

    def __init__(self, api: FaceAPI):
        self.requests: list[tuple[str, str]] = []
        self.sent: list[httpx.Request] = []
        self.responses: list[tuple[str, str, int, dict]] = []
        api._t.http.event_hooks["request"].append(self._request)
        api._t.http.event_hooks["response"].append(self._response)

    def _request(self, request: httpx.Request) -> None:
        self.requests.append((request.method, request.url.path))
        self.sent.append(request)

    def _response(self, response: httpx.Response) -> None:
        request = response.request
        self.responses.append((request.method, request.url.path, response.status_code, dict(response.headers)))

    def paths(self, method: str | None = None) -> list[str]:
        return [path for m, path in self.requests if method is None or m == method]


def _access_token(app, account_id: str, role: str, seconds: float) -> str:
    from flask_jwt_extended import create_access_token

    with app.app_context():
        return create_access_token(
            identity=account_id, additional_claims={"role": role}, expires_delta=timedelta(seconds=seconds)
        )


def test_an_expired_access_token_is_refreshed_by_itself(server, app):
    email, password = make_account("operator")
    api = FaceAPI(server.url, email=email, password=password)
    me = api.me()  # logs in on first use
    assert (me.email, me.role) == (email, "operator")
    recorder = Recorder(api)

    # The server says token_expired: the client refreshes once and sends the call again.
    api.credentials.access_token = _access_token(app, me.id, "operator", -5)
    api.credentials.access_expires_at = time.time() + 3600  # as if the client did not know
    assert api.list_galleries().items == []
    statuses = [(path.rsplit("/", 1)[-1], status) for _, path, status, _ in recorder.responses]
    assert statuses == [("galleries", 401), ("refresh", 200), ("galleries", 200)]

    # A token about to expire is refreshed before it is sent: no 401 at all.
    recorder.responses.clear()
    api.credentials.access_token = _access_token(app, me.id, "operator", 20)
    api.credentials.access_expires_at = faceapi_client._http.token_expiry(api.credentials.access_token)
    assert api.me().id == me.id
    assert [(path.rsplit("/", 1)[-1], status) for _, path, status, _ in recorder.responses] == [
        ("refresh", 200),
        ("me", 200),
    ]

    # Without a refresh token or password, an expired token is the caller's problem, typed.
    bare = FaceAPI(server.url, access_token=_access_token(app, me.id, "operator", -5))
    bare.credentials.access_expires_at = None
    with pytest.raises(AuthenticationError) as expired:
        bare.me()
    assert expired.value.code == "token_expired" and expired.value.status == 401


def test_errors_are_typed_with_their_code_message_and_fields(server, operator):
    with pytest.raises(AuthenticationError) as wrong:
        FaceAPI(server.url, email=operator.credentials.email, password="not the password").login()
    assert wrong.value.code == "invalid_credentials" and wrong.value.message

    with pytest.raises(NotFound) as missing:
        operator.get_person("00000000-0000-0000-0000-000000000000")
    assert missing.value.code == "person_not_found"

    first = operator.submit_enrollment(TOM, name="Tom Hanks", external_id="emp-1", gallery="errors")
    with pytest.raises(Conflict) as exists:
        operator.submit_enrollment(
            images.another_photo(TOM, scale=2.0), name="Tom", external_id="emp-1", gallery="errors"
        )
    assert exists.value.code == "person_exists"
    assert exists.value.person_id == first.person_id  # the error's extra field, as an attribute
    assert operator.wait(first).status == "succeeded"

    with pytest.raises(JobFailed) as no_face:
        operator.recognize(images.no_face_photo(), gallery="errors")
    assert no_face.value.code == "no_face" and no_face.value.job.status == "failed"

    with pytest.raises(TransportError) as down:
        FaceAPI("http://127.0.0.1:9", api_key="fk_x", max_retries=1).me()
    assert down.value.code == "connection_error"


def test_submit_and_wait_long_poll_and_idempotency_keys(operator):
    recorder = Recorder(operator)
    enrolled = operator.enroll_person(TOM, name="Tom Hanks", gallery="sdk")
    assert isinstance(enrolled, models.EnrollJob) and enrolled.result.duplicate is False
    again = operator.add_face(enrolled.person_id, TOM)  # the same photo: nothing added
    assert again.result.duplicate is True and again.result.face_id == enrolled.result.face_id
    assert operator.get_person(enrolled.person_id).face_count == 1

    probe = images.another_photo(TOM, scale=2.0)
    job = operator.recognize(probe, gallery="sdk")
    assert isinstance(job.result, models.RecognizeResult)
    assert job.result.faces[0].best.person_id == enrolled.person_id
    posts = [r for r in recorder.sent if r.method == "POST" and "/auth/" not in r.url.path]
    assert [r.url.path.rsplit("/", 1)[-1] for r in posts] == ["persons", "faces", "recognize"]
    assert all(r.headers.get("Idempotency-Key") for r in posts)  # every POST that creates something
    assert all(r.url.params.get("wait") == "30" for r in posts)  # submit-and-wait
    assert {s for m, _, s, _ in recorder.responses if m == "POST"} <= {200, 202}

    # submit now, long-poll later
    accepted = operator.submit_recognition(probe, gallery="sdk")
    assert isinstance(accepted, models.Accepted)
    assert operator.wait(accepted).result.faces[0].best.name == "Tom Hanks"
    polls = [r for r in recorder.sent if r.method == "GET" and r.url.path.endswith(accepted.job_id)]
    assert polls and all(r.url.params.get("wait") for r in polls)

    # the same Idempotency-Key: the first answer again; with another request: 409
    key = "sdk-test-" + hashlib.sha256(probe).hexdigest()[:16]
    one = operator.submit_recognition(probe, gallery="sdk", idempotency_key=key)
    two = operator.submit_recognition(probe, gallery="sdk", idempotency_key=key)
    assert one.job_id == two.job_id
    with pytest.raises(Conflict) as reused:
        operator.submit_recognition(TOM, gallery="sdk", idempotency_key=key)
    assert reused.value.code == "idempotency_key_reused"

    verdict = operator.verify(TOM, probe)
    assert isinstance(verdict.result, models.VerifyResult) and verdict.result.same_person is True
    jobs = operator.list_jobs(type="recognize")
    assert {j.id for j in jobs.items} >= {job.id, accepted.job_id, one.job_id}


def test_a_429_is_waited_out(operator):
    operator.enroll_person(TOM, name="Tom Hanks", gallery="limits")
    slept: list[float] = []
    real_sleep = operator._t.sleep
    operator._t.sleep = lambda seconds: (slept.append(seconds), real_sleep(seconds))
    recorder = Recorder(operator)
    probe = images.another_photo(TOM, scale=2.0)
    with override_settings(RATELIMIT_SUBMIT="2 per 3 seconds"):
        accepted = [operator.submit_recognition(probe, gallery="limits") for _ in range(3)]
    limited = [h for m, _, s, h in recorder.responses if m == "POST" and s == 429]
    assert limited, "the third submission within 3 seconds should have been refused once"
    retry_after = float(limited[0]["retry-after"])
    assert slept and slept[0] >= retry_after  # the client waited as long as the server asked
    assert len({a.job_id for a in accepted}) == 3
    for a in accepted:
        assert operator.wait(a).status == "succeeded"


def test_a_webhook_is_verified_and_a_tampered_one_rejected(operator):
    from tests.stack.test_webhooks import Receiver

    hook = Receiver([])
    try:
        secret = operator.webhook_secret()
        job = operator.verify(TOM, images.another_photo(TOM, scale=2.0), webhook_url=hook.url)
        hook.wait_for(1)
    finally:
        hook.close()
    headers, body = hook.requests[0]
    event = verify_webhook(secret, body, headers)
    assert event.event == "job.succeeded" and event.delivery_id
    assert event.job.id == job.id and event.job.result.same_person is True

    def refused(code: str, *args, **kwargs) -> None:
        with pytest.raises(WebhookVerificationError) as error:
            verify_webhook(*args, **kwargs)
        assert error.value.code == code

    document = json.loads(body)
    document["result"]["same_person"] = False
    refused("invalid_signature", secret, json.dumps(document).encode(), headers)  # tampered body
    refused("invalid_signature", "another secret", body, headers)
    lowered = {k.lower(): v for k, v in headers.items()}
    assert verify_webhook(secret, body, lowered).job.id == job.id  # header names in any case
    stale = {**headers, "X-FaceAPI-Timestamp": str(int(time.time()) - 3600)}
    stale["X-FaceAPI-Signature"] = sign_webhook(secret, stale["X-FaceAPI-Timestamp"], body)
    refused("stale_timestamp", secret, body, stale)  # correctly signed, but an hour old: a replay
    refused("missing_signature", secret, body, {"X-FaceAPI-Event": "job.succeeded"})
    rotating = [secret, "the next secret"]
    assert verify_webhook(rotating, body, headers).delivery_id == event.delivery_id


def test_api_keys(server):
    from datetime import UTC, datetime

    email, password = make_account("admin")
    admin = FaceAPI(server.url, email=email, password=password)
    created = admin.create_api_key("sdk-test", "operator")
    assert created.key and created.key.startswith("fk_")
    listed = admin.list_api_keys()
    assert created.id in {k.id for k in listed}
    assert all(k.key is None for k in listed)  # the secret is shown once
    with FaceAPI(server.url, api_key=created.key) as by_key:
        recorder = Recorder(by_key)
        assert by_key.list_galleries().items is not None  # a GET with the key as the bearer
        enrolled = by_key.enroll_person(TOM, name="Tom Hanks", gallery="keys")
        assert admin.get_person(enrolled.person_id).gallery == "keys"  # the organisation's gallery
        assert all(r.headers["Authorization"] == f"Bearer {created.key}" for r in recorder.sent)
        admin.revoke_api_key(created.id)
        with pytest.raises(AuthenticationError) as revoked:
            by_key.list_galleries()
        assert revoked.value.status == 401 and revoked.value.code
    assert created.id not in {k.id for k in admin.list_api_keys()}

    soon = datetime.now(UTC) + timedelta(seconds=2)
    expiring = admin.create_api_key("short-lived", "operator", expires_at=soon)
    with FaceAPI(server.url, api_key=expiring.key) as by_key:
        assert by_key.list_galleries().items is not None
        time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.5)
        with pytest.raises(AuthenticationError) as expired:
            by_key.list_galleries()
        assert expired.value.status == 401


def _people(tmp_path) -> list[EnrollItem]:
    photos = {
        "tom/1.png": (TOM, "Tom Hanks", "t-1"),
        "tom/2.jpg": (images.another_photo(TOM, scale=2.0), "Tom Hanks", "t-1"),
        "tom/3.jpg": (images.tilted_photo(TOM), "Tom Hanks", "t-1"),
        "ann/1.jpg": (FACE_0, "Ann", None),
        "ann/2.jpg": (images.another_photo(FACE_0), "Ann", None),
        "bo/1.jpg": (FACE_2, "Bo", "b-2"),
        "bo/2.jpg": (images.another_photo(FACE_2), "Bo", "b-2"),
        "nobody/1.jpg": (images.no_face_photo(), "Nobody", None),
    }
    items = []
    for file, (data, name, external_id) in photos.items():
        path = tmp_path / "photos" / file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        items.append(EnrollItem(path=path, name=name, external_id=external_id, file=file))
    return items


def assert_one_face_per_photo(api: FaceAPI, gallery: str, items: list[EnrollItem]) -> None:
    """Every person of the gallery has exactly the faces of its photos: none missing, none twice."""
    expected: dict[str, set[str]] = {}
    for item in items:
        if item.name != "Nobody":
            expected.setdefault(item.name, set()).add(hashlib.sha256(item.path.read_bytes()).hexdigest()[:12])
    persons = list(api.iter_persons(gallery))
    assert sorted(p.name for p in persons) == sorted(expected), persons
    for person in persons:
        faces = api.list_faces(person.id)
        prefixes = [f.photo_sha256_prefix for f in faces]
        assert sorted(prefixes) == sorted(expected[person.name]), (person.name, prefixes)
        assert person.face_count == len(expected[person.name])


def test_batch_enrollment_interrupted_and_resumed_enrolls_nothing_twice(operator, tmp_path):
    items = _people(tmp_path)
    report = tmp_path / "report.json"
    recorder = Recorder(operator)
    seen: list[tuple[str, str]] = []

    def interrupt_after_two(event) -> None:
        seen.append((event.item.file, event.outcome.status))
        if len(seen) == 2:
            raise KeyboardInterrupt

    # 1. Ctrl-C in the middle (the second photo's outcome): the report keeps what is known.
    with pytest.raises(KeyboardInterrupt):
        enroll_photos(operator, items, "batch", state=report, on_progress=interrupt_after_two, batch_size=2)
    state = json.loads(report.read_text())
    assert state["summary"]["finished"] is False
    assert sum(r["status"] in ("enrolled", "duplicate") for r in state["photos"].values()) >= 1

    # 2. Resumed, and this time the answer to a batch is lost after the server took it.
    real_submit = operator.submit_batch
    lost = []

    def submit_then_lose_the_answer(*args, **kwargs):
        answer = real_submit(*args, **kwargs)
        if not lost:
            lost.append(answer.batch_id)
            raise KeyboardInterrupt  # (or a crash) before the client saw the answer
        return answer

    operator.submit_batch = submit_then_lose_the_answer
    with pytest.raises(KeyboardInterrupt):
        enroll_photos(operator, items, "batch", state=report, batch_size=2)
    del operator.submit_batch

    # 3. Resumed again: the batch whose answer was lost is sent with the same key and replayed.
    recorder.responses.clear()
    progress = []
    summary = enroll_photos(operator, items, "batch", state=report, batch_size=2, on_progress=progress.append)
    replayed = [h for m, p, s, h in recorder.responses if m == "POST" and h.get("idempotent-replayed") == "true"]
    assert len(replayed) == 1, recorder.responses
    assert [e.done for e in progress] == list(range(1, len(items) + 1))
    assert summary.pending == 0 and summary.skipped >= 1
    assert [(f.file, f.code) for f in summary.failed] == [("nobody/1.jpg", "no_face")]
    assert summary.failed[0].message  # the message, not only the code
    assert_one_face_per_photo(operator, "batch", items)

    # 4. Once more: everything is done, nothing is sent.
    recorder.requests.clear()
    summary = enroll_photos(operator, items, "batch", state=report, batch_size=2)
    assert "/api/v1/enrollments" not in recorder.paths("POST") and not any(
        "/faces" in p for p in recorder.paths("POST")
    )
    assert summary.skipped == 7 and len(summary.failed) == 1 and summary.enrolled == 0

    # 5. Without the report (lost): the same requests are answered with their first answers
    #    (Idempotency-Key), and other requests (here, other batch sizes) meet the server's rule:
    #    the same photo for the same person is a duplicate and adds nothing.
    summary = enroll_photos(operator, items, "batch", state=None, batch_size=2)
    assert summary.enrolled + summary.duplicate == 7 and len(summary.failed) == 1
    summary = enroll_photos(operator, items, "batch", state=None, batch_size=3)
    assert summary.enrolled == 0 and summary.duplicate == 7, summary
    assert_one_face_per_photo(operator, "batch", items)

    # 6. A report is tied to its gallery and service.
    with pytest.raises(ValueError, match="gallery 'batch'"):
        EnrollState.open(report, operator.url, "another")


def _mock_api(handler, **options) -> tuple[FaceAPI, list[float]]:
    api = FaceAPI("http://faceapi.test", api_key="fk_test", transport=httpx.MockTransport(handler), **options)
    slept: list[float] = []
    api._t.sleep = slept.append
    return api, slept


def test_retries_honour_retry_after_and_resend_only_idempotent_calls():
    calls: list[tuple[str, str, str | None]] = []
    script: list = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append((request.method, request.url.path, request.headers.get("Idempotency-Key")))
        step = script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    def error(status: int, code: str, **headers) -> httpx.Response:
        return httpx.Response(status, json={"error": {"code": code, "message": code}}, headers=headers)

    accepted = httpx.Response(202, json={"job_id": "j-1"})
    api, slept = _mock_api(handler)

    # 429 and 503 are waited out for as long as Retry-After says, even on a POST
    script[:] = [error(429, "rate_limited", **{"Retry-After": "7"}), error(503, "queue_unavailable"), accepted]
    assert api.submit_recognition(TOM).job_id == "j-1"
    assert slept[0] >= 7 and len(calls) == 3
    assert len({key for _, _, key in calls}) == 1 and calls[0][2]  # one Idempotency-Key for every attempt

    # a broken connection: a GET is sent again, ...
    calls.clear()
    script[:] = [httpx.ReadError("reset"), httpx.Response(200, json={"items": [], "next_cursor": None})]
    assert api.list_galleries().items == [] and len(calls) == 2

    # ... a POST with an Idempotency-Key the route honours too, ...
    calls.clear()
    script[:] = [httpx.ReadError("reset"), accepted]
    assert api.submit_recognition(TOM).job_id == "j-1" and calls[0][2] == calls[1][2]

    # ... but not a POST that could have created something without one (a gallery)
    calls.clear()
    script[:] = [httpx.ReadError("reset")]
    with pytest.raises(TransportError):
        api.create_gallery("g")
    assert len(calls) == 1

    # a connection never made is always tried again
    calls.clear()
    script[:] = [httpx.ConnectError("refused"), error(409, "gallery_exists")]
    with pytest.raises(Conflict):
        api.create_gallery("g")
    assert len(calls) == 2

    # a DELETE whose answer was lost, sent again, finds nothing: it had worked
    calls.clear()
    script[:] = [httpx.ReadError("reset"), error(404, "person_not_found")]
    api.delete_person("p-1")
    assert len(calls) == 2

    # a Retry-After longer than the client will wait is raised, not slept through
    short, _ = _mock_api(handler, max_retry_wait=5)
    script[:] = [error(429, "rate_limited", **{"Retry-After": "60"})]
    with pytest.raises(faceapi_client.RateLimited) as limited:
        short.list_galleries()
    assert limited.value.retry_after == 60
