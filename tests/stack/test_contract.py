"""The API contract holds: the served OpenAPI document is valid OpenAPI 3.1, names and tags every
operation, documents every error as the one error document, and is complete enough for a
generated client: openapi-python-client reads it without a warning, and the client it writes
logs in, enrolls, waits and reads a typed recognition result from the real stack over HTTP.

That each answer matches its documented status, content type and schema is tests/stack/test_fuzz.py's.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import openapi_spec_validator
import pytest

from tests import images
from tests.conftest import JOB_TIMEOUT_SECONDS, make_account

DOCUMENT_URL = "/api/v1/openapi.json"
ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
# The one error status whose body is not the error document: a readiness probe answers 503 with
# the same document as its 200 (which check failed), for orchestrators rather than API clients.
NOT_ERROR_DOCUMENTS = {("get", "/readyz", "503")}
CLIENT_PACKAGE = "faceapi_contract_client"


@pytest.fixture(scope="module")
def document(app) -> dict:
    response = app.test_client().get(DOCUMENT_URL)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1.")
    openapi_spec_validator.validate(document, cls=openapi_spec_validator.OpenAPIV31SpecValidator)


def test_every_operation_is_named_and_tagged(document):
    declared_tags = {tag["name"] for tag in document.get("tags", [])}
    names = []
    for method, path, operation in operations(document):
        assert operation.get("operationId"), f"{method.upper()} {path} has no operationId"
        assert operation.get("tags"), f"{method.upper()} {path} has no tag"
        assert set(operation["tags"]) <= declared_tags, f"{method.upper()} {path}: undeclared tag"
        names.append(operation["operationId"])
    assert len(names) == len(set(names)), "operationIds must be unique"
    assert len(names) >= 30  # the whole API, not a part of it


def test_every_error_answer_is_the_one_error_document(document):
    assert "ErrorBody" in document["components"]["schemas"]
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if not status.startswith(("4", "5")) or (method, path, status) in NOT_ERROR_DOCUMENTS:
                continue
            content = response.get("content")
            assert content == {"application/json": {"schema": ERROR_BODY}}, (
                f"{method.upper()} {path} {status}: {json.dumps(content)}"
            )


# --- a generated client -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(document, tmp_path_factory) -> tuple[str, Path]:
    """openapi-python-client's output for the served document, and the package it wrote."""
    workdir = tmp_path_factory.mktemp("client")
    document_path = workdir / "openapi.json"
    document_path.write_text(json.dumps(document))
    # The generator reads only JSON, text and octet-stream answers; a face crop (image/jpeg) is bytes
    # to a client, as its documented option for other binary types says.
    config_path = workdir / "generator.json"
    config_path.write_text(json.dumps({"content_type_overrides": {"image/jpeg": "application/octet-stream"}}))
    package = workdir / CLIENT_PACKAGE
    venv_bin = Path(sys.executable).parent
    result = subprocess.run(
        [
            str(venv_bin / "openapi-python-client"),
            "generate",
            "--path",
            str(document_path),
            "--output-path",
            str(package),
            "--meta",
            "none",
            "--config",
            str(config_path),
            "--fail-on-warning",
        ],
        cwd=workdir,
        # The generator formats its output with ruff (installed in the venv): on PATH, so that
        # a missing formatter does not hide as a warning of its own.
        env={**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output, package


def test_the_generator_reads_the_document_without_warnings(generated):
    output, package = generated
    # Anything but its one progress line is a warning ("Unable to process schema", "Skipping", ...).
    assert output.strip().splitlines() == [f"Generating {package}"], output
    assert (package / "api" / "recognition" / "recognition_recognize.py").is_file()


@pytest.fixture(scope="module")
def client_package(generated):
    _, package = generated
    sys.path.insert(0, str(package.parent))
    try:
        yield importlib.import_module(CLIENT_PACKAGE)
    finally:
        sys.path.remove(str(package.parent))
        for name in [name for name in sys.modules if name.split(".")[0] == CLIENT_PACKAGE]:
            del sys.modules[name]


def _module(package, name: str):
    return importlib.import_module(f"{package.__name__}.{name}")


def test_the_generated_client_enrolls_and_recognizes(client_package, live_server):
    import httpx

    client_module = _module(client_package, "client")
    api = _module(client_package, "api")
    models = _module(client_package, "models")
    types = _module(client_package, "types")
    auth_login = importlib.import_module(f"{api.__name__}.auth.auth_login")
    persons_enroll = importlib.import_module(f"{api.__name__}.persons.persons_enroll")
    recognition_recognize = importlib.import_module(f"{api.__name__}.recognition.recognition_recognize")
    jobs_show = importlib.import_module(f"{api.__name__}.jobs.jobs_show")
    timeout = httpx.Timeout(60.0)

    def finished(client, job_id: uuid.UUID):
        """The job once it has ended, long-polling with ?wait=30."""
        deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
        while True:
            job = jobs_show.sync(job_id, client=client, wait=30)
            assert isinstance(job, models.Job), job
            if job.status in (models.JobStatus.SUCCEEDED, models.JobStatus.FAILED):
                return job
            assert time.monotonic() < deadline, f"job {job_id} still {job.status}"

    email, password = make_account("operator")
    anonymous = client_module.Client(base_url=live_server.url, timeout=timeout, raise_on_unexpected_status=True)
    tokens = auth_login.sync(client=anonymous, body=models.Credentials(email=email, password=password))
    assert isinstance(tokens, models.Tokens), tokens

    client = client_module.AuthenticatedClient(
        base_url=live_server.url, token=tokens.access_token, timeout=timeout, raise_on_unexpected_status=True
    )
    tom = images.tom_hanks()
    name = f"Tom Hanks {uuid.uuid4().hex[:6]}"
    enrolled = persons_enroll.sync(
        client=client,
        body=models.EnrollForm(
            name=name,
            image=types.File(payload=io.BytesIO(tom), file_name="tom.png", mime_type="image/png"),
            consent="true",
            gallery="contract",
        ),
        wait=30,
    )
    # 200 with the finished job, or 202 when it took longer than ?wait.
    assert isinstance(enrolled, models.SubmittedJob | models.PersonAccepted), enrolled
    job = enrolled if isinstance(enrolled, models.SubmittedJob) else finished(client, enrolled.job_id)
    assert job.status == models.JobStatus.SUCCEEDED, job.error
    assert isinstance(job.result, models.EnrollResult), job.result
    assert job.result.person_id == enrolled.person_id

    photo = images.another_photo(tom, scale=2.0)
    accepted = recognition_recognize.sync(
        client=client,
        body=models.RecognizeForm(
            image=types.File(payload=io.BytesIO(photo), file_name="probe.jpg", mime_type="image/jpeg"),
            gallery="contract",
        ),
    )
    assert isinstance(accepted, models.JobAccepted), accepted
    job = finished(client, accepted.job_id)
    assert job.status == models.JobStatus.SUCCEEDED, job.error
    result = job.result
    assert isinstance(result, models.RecognizeResult), result  # typed, not a dict
    assert isinstance(result.faces[0], models.RecognizedFace)
    best = result.faces[0].matches[0]
    assert isinstance(best, models.Match)
    assert best.name == name
    assert best.person_id == enrolled.person_id
    assert best.similarity >= result.threshold
