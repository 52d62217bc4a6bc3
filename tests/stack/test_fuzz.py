"""Every answer is one that /api/v1/openapi.json promises: no 5xx, a documented status code, its
documented content type, a body valid against that status' schema, the documented headers, and
no field the schema does not name (CHECKS).

Three sources of requests, every answer held to the same checks:
- schemathesis generates valid and invalid requests for every operation (admin operations as an
  admin); operations on one resource also get the ids of real ones (a person with faces,
  finished jobs of each type, a batch, an account, an API key), so real documents are checked,
  not only 404s;
- those real resources are made through the API, and each answer on the way is checked, as are
  the answers that only a real resource gives (?wait=N's finished job, 202s, a cancelled job,
  a redelivery, an API key as the caller, deletions);
- a JSON body over the app's limit, sent to every operation that takes JSON.

Schemathesis' own pytest plugin does not work with this pytest version, so each API
operation's Hypothesis strategy is driven directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from functools import cache

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup

from tests import images
from tests.conftest import ROOT, bearer, free_port, login, make_account, stored_job, upload


def _operations() -> list[tuple[str, str]]:
    """The document's operations, read in a process of its own: building the app here, while
    tests are collected, would make the job queue's client (workers/celery_app.py) before the
    test session has started its Redis, and every submission of the session would answer 503."""
    code = (
        "import json; from web import create_app; "
        "print(json.dumps([[m.upper(), p] for p, item in create_app().api_doc['paths'].items() for m in item "
        "if m in ('get', 'post', 'put', 'patch', 'delete')]))"
    )
    with tempfile.TemporaryDirectory() as data_dir:
        env = {**os.environ, "FACEAPI_ENV": "test", "DATA_DIR": data_dir}
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False
        )
    assert result.returncode == 0, result.stderr
    return [tuple(operation) for operation in json.loads(result.stdout.splitlines()[-1])]


OPERATIONS = _operations()
EXAMPLES_PER_OPERATION = 20


def _closed(node):
    """A copy of a schema in which every object that lists its properties allows no others
    (unless it says so itself, as the error details do)."""
    if isinstance(node, dict):
        copy = {key: _closed(value) for key, value in node.items()}
        if "properties" in copy and "additionalProperties" not in copy:
            copy["additionalProperties"] = False
        return copy
    if isinstance(node, list):
        return [_closed(value) for value in node]
    return node


@cache
def _closed_document(document_json: str) -> dict:
    return _closed(json.loads(document_json))


def every_field_documented(ctx, response, case) -> bool | None:
    """Each field of an answer is one its schema names: a field the document does not name is
    invisible to a generated client (it lands, untyped, in `additional_properties`).
    response_schema_conformance cannot see it, since response schemas are open."""
    document = case.operation.schema.raw_schema
    declared = document["paths"][case.operation.path][case.method.lower()]["responses"].get(str(response.status_code))
    schema = ((declared or {}).get("content") or {}).get("application/json", {}).get("schema")
    if schema is None or not response.content:
        return None
    closed = _closed_document(json.dumps(document))
    validator = Draft202012Validator({**_closed(schema), "components": closed["components"]})
    problems = sorted(validator.iter_errors(response.json()), key=lambda error: list(error.absolute_path))
    assert not problems, f"{case.method} {case.operation.path} {response.status_code}: " + "; ".join(
        f"{'/'.join(map(str, problem.absolute_path)) or '(the body)'}: {problem.message[:300]}" for problem in problems
    )
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    every_field_documented,
]
# Operations that would destroy the real resources the others are fuzzed with get random ids only.
DESTRUCTIVE = {
    ("DELETE", "/api/v1/persons/{person_id}"),
    ("DELETE", "/api/v1/persons/{person_id}/faces/{face_id}"),
    ("DELETE", "/api/v1/galleries/{name}"),
    ("DELETE", "/api/v1/accounts/{account_id}"),
    ("DELETE", "/api/v1/api-keys/{key_id}"),
    ("DELETE", "/api/v1/galleries/{name}/unknowns/{unknown_id}"),
    ("DELETE", "/api/v1/galleries/{name}/unknowns/{unknown_id}/faces/{face_id}"),
    ("POST", "/api/v1/galleries/{name}/unknowns/{unknown_id}/enroll"),
    ("POST", "/api/v1/galleries/{name}/unknowns/{unknown_id}/merge"),
}
# Fuzzed as an admin of the fuzzing operator's organisation (as the operator they only answer 403).
ADMIN_TAG = "accounts"
GALLERY = "fuzz"
TOM = images.tom_hanks()
TOM_2 = images.another_photo(TOM, scale=2.0)
FACE_OF_GROUP = images.crop(images.group_photo(), images.ONE_FACE_OF_GROUP)  # nobody the gallery knows
JOB_TIMEOUT = 90


@pytest.fixture(scope="module")
def api_schema(app, services):
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


@pytest.fixture(scope="module")
def fuzz_account(app, services) -> tuple[str, str]:
    return make_account("operator")


@pytest.fixture(scope="module")
def fuzz_headers(app, fuzz_account) -> dict[str, str]:
    return bearer(login(app.test_client(), *fuzz_account)["access_token"])


@pytest.fixture(scope="module")
def admin_headers(app, fuzz_account) -> dict[str, str]:
    admin = make_account("admin", colleague_of=fuzz_account[0])
    return bearer(login(app.test_client(), *admin)["access_token"])


@dataclass
class Documented:
    """Sends a request with the test client and holds its answer to the document (CHECKS)."""

    app: object
    api_schema: object
    headers: dict[str, str]

    def __call__(
        self, method: str, path: str, *, path_parameters: dict | None = None, query: dict | None = None, **kwargs
    ):
        path_parameters = path_parameters or {}
        response = self.app.test_client().open(
            path.format(**path_parameters), method=method, query_string=query, headers=self.headers, **kwargs
        )
        case = self.api_schema[path][method].Case(path_parameters=path_parameters, query=query)
        case.validate_response(response, checks=CHECKS, headers=self.headers)
        return response

    def submit(self, path: str, form: dict, *, path_parameters: dict | None = None, wait: float = 30):
        return self(
            "POST",
            path,
            path_parameters=path_parameters,
            query={"wait": wait},
            data=form,
            content_type="multipart/form-data",
        )

    def job(self, job_id: str) -> dict:
        deadline = time.monotonic() + JOB_TIMEOUT
        while True:
            job = self("GET", "/api/v1/jobs/{job_id}", path_parameters={"job_id": job_id}, query={"wait": 30})
            if job.get_json()["status"] in ("succeeded", "failed"):
                return job.get_json()
            assert time.monotonic() < deadline, job.get_json()

    def finished(self, response) -> dict:
        """A submission's job once it has ended: ?wait's 200, or its 202 followed up."""
        assert response.status_code in (200, 202), response.get_json()
        body = response.get_json()
        return body if response.status_code == 200 else self.job(body["job_id"])


@pytest.fixture(scope="module")
def real(app, api_schema, fuzz_headers, admin_headers, worker) -> dict[str, list[str]]:
    """Real resources of the fuzzing account, made through the API with every answer checked:
    values for each path parameter."""
    send = Documented(app, api_schema, fuzz_headers)
    admin = Documented(app, api_schema, admin_headers)
    enrolled = send.finished(
        send.submit("/api/v1/persons", {"name": "Tom", "consent": "true", "gallery": GALLERY, "image": upload(TOM)})
    )
    assert enrolled["status"] == "succeeded", enrolled
    person_id = enrolled["person_id"]
    added = send.finished(
        send.submit(
            "/api/v1/persons/{person_id}/faces",
            {"image": upload(TOM_2)},
            path_parameters={"person_id": person_id},
            wait=0,
        )  # 202 then polled
    )
    assert added["status"] == "succeeded", added
    recognized = send.finished(send.submit("/api/v1/recognize", {"gallery": GALLERY, "image": upload(TOM_2)}))
    assert recognized["result"]["faces"][0]["matches"], recognized
    verified = send.finished(send.submit("/api/v1/verify", {"image": upload(TOM_2), "person_id": person_id}))
    assert verified["status"] == "succeeded", verified
    nobody = send.finished(
        send.submit("/api/v1/recognize", {"gallery": GALLERY, "image": upload(images.no_face_photo())})
    )
    assert nobody["status"] == "failed", nobody
    detected = send.finished(send.submit("/api/v1/detect", {"image": upload(TOM_2), "landmarks": "106"}))
    assert detected["status"] == "succeeded", detected
    # Search by a stored face: the person's other face matches (a real answer, not a 404).
    searched = send("POST", "/api/v1/search", json={"face_id": enrolled["result"]["face_id"]})
    assert searched.status_code == 200 and searched.get_json()["matches"], searched.get_json()
    # A webhook nobody receives: the job document lists its failed deliveries.
    hooked = send.finished(
        send.submit(
            "/api/v1/verify",
            {"image_a": upload(TOM), "image_b": upload(TOM_2), "webhook_url": f"http://127.0.0.1:{free_port()}/hook"},
        )
    )
    batch = send(
        "POST",
        "/api/v1/enrollments",
        data={
            "consent": "true",
            "gallery": f"{GALLERY}-batch",
            "manifest": json.dumps(
                [{"file": "tom.png", "name": "Tom", "external_id": "t-1"}, {"file": "empty.jpg", "name": "Nobody"}]
                + [{"file": "missing.jpg", "name": "Ghost"}]
            ),
            "images": [upload(TOM, "tom.png"), upload(images.no_face_photo(), "empty.jpg")],
        },
        content_type="multipart/form-data",
    )
    assert batch.status_code == 202, batch.get_json()
    batch_id = batch.get_json()["batch_id"]
    deadline = time.monotonic() + JOB_TIMEOUT
    while send("GET", "/api/v1/enrollments/{batch_id}", path_parameters={"batch_id": batch_id}).get_json()[
        "status"
    ] not in ("succeeded", "partial", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    # A stranger in the gallery's unknowns pool, and an export of the gallery to download.
    pool = {"unknowns": {"enabled": True, "retention_days": 7}}
    assert send("PATCH", "/api/v1/galleries/{name}", path_parameters={"name": GALLERY}, json=pool).status_code == 200
    stranger = send.finished(send.submit("/api/v1/recognize", {"gallery": GALLERY, "image": upload(FACE_OF_GROUP)}))
    unknown_ids = [face["unknown"]["id"] for face in stranger["result"]["faces"] if "unknown" in face]
    assert unknown_ids, stranger
    exported = send("POST", "/api/v1/galleries/{name}/export", path_parameters={"name": GALLERY})
    assert exported.status_code == 202, exported.get_json()
    export = send.job(exported.get_json()["job_id"])
    assert export["status"] == "succeeded", export
    me = send("GET", "/api/v1/auth/me").get_json()
    # A colleague whose role the fuzzing may change, and an API key.
    colleague = admin(
        "POST",
        "/api/v1/accounts",
        json={"email": f"c-{uuid.uuid4().hex[:8]}@example.com", "password": "a colleague's password"},
    )
    assert colleague.status_code == 201, colleague.get_json()
    key = admin("POST", "/api/v1/api-keys", json={"name": "fuzz", "role": "operator", "galleries": [GALLERY]})
    assert key.status_code == 201, key.get_json()
    return {
        "person_id": [person_id],
        "face_id": [enrolled["result"]["face_id"], added["result"]["face_id"]],
        "job_id": [job["id"] for job in (enrolled, added, recognized, verified, nobody, detected, hooked)],
        "batch_id": [batch_id],
        "name": [GALLERY],
        "account_id": [colleague.get_json()["id"]],
        "key_id": [key.get_json()["id"]],
        "me": [me["id"]],
        "key": [key.get_json()["key"]],
        "unknown_id": unknown_ids,
        "export_id": [export["result"]["export_id"]],
    }


def _strategy(operation, method: str, path: str, real: dict[str, list[str]]):
    """Valid and invalid requests with random ids, and (unless destructive) valid ones with the
    ids of real resources."""
    generated = st.one_of(operation.as_strategy(), operation.as_strategy(GenerationMode.NEGATIVE))
    names = [parameter.name for parameter in operation.path_parameters]
    if not names or (method, path) in DESTRUCTIVE:
        return generated
    ids = st.fixed_dictionaries({name: st.sampled_from(real[name]) for name in names})
    return st.one_of(generated, ids.flatmap(lambda values: operation.as_strategy(path_parameters=values)))


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_answer_is_documented(app, api_schema, fuzz_headers, admin_headers, real, method, path):
    operation = api_schema[path][method]
    tags = api_schema.raw_schema["paths"][path][method.lower()].get("tags", [])
    caller = admin_headers if ADMIN_TAG in tags else fuzz_headers

    # Operations that revoke the caller's tokens, or erase the caller, get a throwaway account per example.
    revokes = path in ("/api/v1/auth/logout", "/api/v1/auth/password", "/api/v1/auth/me") and method != "GET"

    @given(case=_strategy(operation, method, path, real))
    # Derandomized so CI sees the same examples every run; drop it locally to explore new inputs.
    @settings(
        max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
    )
    def fuzz(case):
        headers = bearer(login(app.test_client(), *make_account("user"))["access_token"]) if revokes else caller
        case.call_and_validate(headers=dict(headers), checks=CHECKS)

    fuzz()


def _wait_until_its_delivery_gave_up(app, headers: dict, job_id: str, timeout: float = 180) -> None:
    """The job's webhook goes to a closed port, and the fuzzing above may have asked for more
    deliveries of it: wait until none is in flight (a redelivery is refused while one is)."""
    from domain import webhooks
    from domain.notifications import redis_client

    deadline = time.monotonic() + timeout
    while redis_client().exists(webhooks._in_flight_key("job", job_id)):
        assert time.monotonic() < deadline, "a delivery of the job is still in flight"
        time.sleep(0.5)


def test_answers_only_real_resources_give_are_documented(app, api_schema, fuzz_headers, admin_headers, real):
    """Lists with items, a cancellation, a redelivery, an admin's views, an API key as the
    caller, deletions."""
    from domain.db import session_scope

    send = Documented(app, api_schema, fuzz_headers)
    person = {"person_id": real["person_id"][0]}
    for query in ({"gallery": GALLERY}, {"gallery": GALLERY, "external_id": "none", "limit": 1}):
        assert send("GET", "/api/v1/persons", query=query).status_code == 200
    assert send("GET", "/api/v1/persons/{person_id}", path_parameters=person).get_json()["faces"]
    assert send("GET", "/api/v1/persons/{person_id}/faces", path_parameters=person).status_code == 200
    changed = send(
        "PATCH",
        "/api/v1/persons/{person_id}",
        path_parameters=person,
        json={"external_id": "t-9", "metadata": {"a": 1}},
    )
    assert changed.status_code == 200
    for query in ({}, {"type": "recognize", "status": "succeeded"}, {"limit": 1}):
        assert send("GET", "/api/v1/jobs", query=query).get_json()["items"]
    assert send("GET", "/api/v1/enrollments").get_json()["items"]
    assert send("GET", "/api/v1/galleries").get_json()["items"]

    hooked, plain = real["job_id"][-1], real["job_id"][0]
    _wait_until_its_delivery_gave_up(app, fuzz_headers, hooked)  # a redelivery waits for it (409 before)
    redelivered = send("POST", "/api/v1/jobs/{job_id}/redeliver", path_parameters={"job_id": hooked})
    assert redelivered.status_code == 202
    not_hooked = send("POST", "/api/v1/jobs/{job_id}/redeliver", path_parameters={"job_id": plain})
    assert not_hooked.status_code == 409
    assert send("DELETE", "/api/v1/jobs/{job_id}", path_parameters={"job_id": plain}).status_code == 409
    with session_scope() as session:
        queued = str(stored_job(session, uuid.UUID(real["me"][0])).id)
    cancelled = send("DELETE", "/api/v1/jobs/{job_id}", path_parameters={"job_id": queued})
    assert cancelled.get_json()["error"]["code"] == "cancelled"

    admin = Documented(app, api_schema, admin_headers)
    assert admin("GET", "/api/v1/accounts", query={"limit": 5}).get_json()["items"]
    assert admin("GET", "/api/v1/audit", query={"actor_id": real["me"][0]}).get_json()["items"]
    account = {"account_id": real["account_id"][0]}
    changed_role = admin("PATCH", "/api/v1/accounts/{account_id}", path_parameters=account, json={"role": "operator"})
    assert changed_role.status_code == 200
    assert admin("GET", "/api/v1/api-keys").get_json()["items"]

    as_key = Documented(app, api_schema, bearer(real["key"][0]))
    assert as_key("GET", "/api/v1/auth/me").get_json()["api_key"]["prefix"]  # whoami answers a key
    password = {"current_password": "not a key's", "new_password": "not a key's either"}
    refused = as_key("POST", "/api/v1/auth/password", json=password)  # the rest of /auth/* is a person's
    assert refused.get_json()["error"]["code"] == "password_login_required"
    assert as_key("GET", "/api/v1/jobs", query={"limit": 1}).status_code == 200
    assert as_key("GET", "/api/v1/persons", query={"gallery": GALLERY}).status_code == 200
    assert as_key("GET", "/api/v1/persons", query={"gallery": f"{GALLERY}-batch"}).status_code == 403
    revoked = admin("DELETE", "/api/v1/api-keys/{key_id}", path_parameters={"key_id": real["key_id"][0]})
    assert revoked.status_code == 204
    assert as_key("GET", "/api/v1/jobs").get_json()["error"]["code"] == "api_key_invalid"

    face = {**person, "face_id": real["face_id"][1]}
    assert send("DELETE", "/api/v1/persons/{person_id}/faces/{face_id}", path_parameters=face).status_code == 204
    assert send("DELETE", "/api/v1/persons/{person_id}", path_parameters=person).status_code == 204
    assert send("GET", "/api/v1/persons/{person_id}", path_parameters=person).status_code == 404
    assert admin("DELETE", "/api/v1/accounts/{account_id}", path_parameters=account).status_code == 204


def test_an_oversized_json_body_is_a_documented_answer(app, api_schema, fuzz_headers):
    """The app refuses any JSON body over its limit before an operation sees it (413)."""
    from web.errors import JSON_BODY_LIMIT

    send = Documented(app, api_schema, fuzz_headers)
    body = json.dumps({"padding": "x" * JSON_BODY_LIMIT})
    taking_json = [
        (method.upper(), path, operation)
        for path, item in api_schema.raw_schema["paths"].items()
        for method, operation in item.items()
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    ]
    assert len(taking_json) >= 5
    failures = []
    for method, path, operation in taking_json:
        parameters = {
            parameter["name"]: str(uuid.uuid4()) if parameter["schema"].get("format") == "uuid" else "x"
            for parameter in operation.get("parameters", [])
            if parameter["in"] == "path"
        }
        try:
            response = send(method, path, path_parameters=parameters, data=body, content_type="application/json")
            assert response.status_code == 413, response.get_json()
        except (AssertionError, FailureGroup) as failure:
            failures.append(f"{method} {path}: {failure}")
    assert not failures, "\n".join(failures)
