"""Operational surfaces locked down: Flower needs basic auth outside
development, /metrics a token, the embedded Redis a password (its files the owner's only), and no
email address reaches a log line (rate-limit keys, SQL parameters, database error details)."""

from __future__ import annotations

import logging
import os
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
from sqlalchemy import text

from tests.conftest import ROOT, free_port, make_account, override_settings

FLOWER_AUTH = ("ops", "a-flower-test-password")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- the embedded Redis -------------------------------------------------------------------------


def _raw_redis(port: int, command: bytes) -> bytes:
    """A client that sends no password: what any local process could do."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(command)
        return sock.recv(1024)


def test_embedded_redis_needs_its_password_and_keeps_its_files_to_the_owner(tmp_path):
    import redis

    from stack.embedded import embedded_redis_url, start_redis

    leftover = tmp_path / "redis" / "appendonly.aof"  # as an earlier version left it: world-readable
    leftover.parent.mkdir(parents=True)
    leftover.touch(mode=0o644)
    port = free_port()
    process, url = start_redis(tmp_path, port)
    try:
        assert url == embedded_redis_url(tmp_path, port) and url.startswith("redis://:")
        assert _raw_redis(port, b"PING\r\n").startswith(b"-NOAUTH")
        assert _raw_redis(port, b"SET revoked:jti no\r\n").startswith(b"-NOAUTH")
        client = redis.Redis.from_url(url)
        client.set("denylist-probe", "1")
        client.bgrewriteaof()  # a rewrite makes a new append-only file: it too is the owner's only
        deadline = time.monotonic() + 10
        while client.info("persistence")["aof_rewrite_in_progress"] and time.monotonic() < deadline:
            time.sleep(0.1)
        password = url.split(":")[2].split("@")[0]
        assert password not in " ".join(psutil.Process(process.pid).cmdline())  # `ps` shows every user the argv
    finally:
        process.terminate()
        process.wait(15)
    assert _mode(tmp_path / "redis_password") == 0o600
    assert _mode(tmp_path / "redis") == 0o700
    files = [path for path in (tmp_path / "redis").rglob("*") if path.is_file()]
    assert leftover in files and {path.name: _mode(path) for path in files} == {path.name: 0o600 for path in files}


def test_the_stack_hands_out_the_password_protected_url(services):
    from config import get_settings
    from stack.embedded import embedded_redis_url

    settings = get_settings()
    assert os.environ["REDIS_URL"] == embedded_redis_url(settings.data_dir, settings.embedded_redis_port)
    port = settings.embedded_redis_port
    assert _raw_redis(port, b"PING\r\n").startswith(b"-NOAUTH")


def test_a_redis_that_refuses_the_password_is_not_taken_for_ours(tmp_path):
    from stack.embedded import start_redis

    port = free_port()
    first, _ = start_redis(tmp_path / "first", port)
    try:
        with pytest.raises(RuntimeError, match="EMBEDDED_REDIS_PORT"):
            start_redis(tmp_path / "second", port)  # another DATA_DIR: another password
    finally:
        first.terminate()
        first.wait(15)


# --- Flower ---------------------------------------------------------------------------------------


def _flower_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_BASIC_AUTH")}
    return {**env, "FACEAPI_ENV": "production", "HOST": "127.0.0.1", **settings}


def test_flower_refuses_to_start_in_production_without_basic_auth():
    completed = subprocess.run(
        [sys.executable, "-m", "stack.serve", "flower"],
        cwd=ROOT,
        env=_flower_env(FLOWER_PORT=str(free_port())),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode != 0
    assert "FLOWER_BASIC_AUTH" in completed.stderr and "Traceback" not in completed.stderr


def test_flower_without_auth_listens_on_loopback_only_in_development():
    from stack.serve import command

    with override_settings(FACEAPI_ENV="development", HOST="0.0.0.0", FLOWER_BASIC_AUTH=""):
        words = command("flower")
    assert "--address=127.0.0.1" in words and not any(word.startswith("--basic-auth") for word in words)


def test_flower_credentials_are_not_on_its_command_line():
    from stack.serve import command, role_environment

    auth = ":".join(FLOWER_AUTH)
    with override_settings(FACEAPI_ENV="production", HOST="0.0.0.0", FLOWER_BASIC_AUTH=auth):
        words, environment = command("flower"), role_environment("flower")
    assert "--address=0.0.0.0" in words and FLOWER_AUTH[1] not in " ".join(words)
    assert environment == {"FLOWER_BASIC_AUTH": auth} and role_environment("worker") == {}


@pytest.mark.parametrize("auth", ["ops:", ":pw", "ops:pw,second"])
def test_flower_refuses_basic_auth_that_is_not_user_password_pairs(auth):
    from stack.serve import RoleRefused, command

    with override_settings(FACEAPI_ENV="production", FLOWER_BASIC_AUTH=auth), pytest.raises(RoleRefused):
        command("flower")


def test_make_run_hands_flower_its_credentials_from_a_secret_file(tmp_path):
    """`make run`'s supervisor starts Flower with FLOWER_BASIC_AUTH in its environment even when the
    setting came from FLOWER_BASIC_AUTH_FILE (the command line no longer carries it)."""
    from stack.run import Supervisor

    secret, seen = tmp_path / "flower_basic_auth", tmp_path / "seen"
    secret.write_text(":".join(FLOWER_AUTH) + "\n")
    report = "import os, sys; open(sys.argv[1], 'w').write(os.environ.get('FLOWER_BASIC_AUTH', '-'))"
    supervisor = Supervisor()
    with override_settings(FLOWER_BASIC_AUTH="", FLOWER_BASIC_AUTH_FILE=str(secret)):
        supervisor.start({"flower": [sys.executable, "-c", report, str(seen)]})
    assert supervisor.processes["flower"].wait(30) == 0
    assert seen.read_text() == ":".join(FLOWER_AUTH)


@pytest.mark.parametrize(("auth", "address"), [("", "127.0.0.1"), (":".join(FLOWER_AUTH), "0.0.0.0")])
def test_make_run_shows_where_flower_really_listens(auth, address):
    from stack.run import banner
    from stack.serve import command

    with override_settings(FACEAPI_ENV="development", HOST="0.0.0.0", FLOWER_BASIC_AUTH=auth, FLOWER_PORT="5999"):
        shown, words = banner(["postgresql"]), command("flower")
    assert f"Flower:  http://{address}:5999" in shown and f"--address={address}" in words


def test_flower_with_basic_auth_answers_401_without_credentials(services, tmp_path):
    """From a secret file, as the deployments give it: Flower gets it in its environment, and
    neither its command line (which `ps` shows every local user) nor its log holds the password."""
    port = free_port()
    log_path = tmp_path / "flower.log"
    secret = tmp_path / "flower_basic_auth"
    secret.write_text(":".join(FLOWER_AUTH) + "\n")
    env = _flower_env(FLOWER_PORT=str(port), FLOWER_BASIC_AUTH_FILE=str(secret))
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "stack.serve", "flower"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            try:
                anonymous = requests.get(f"{base}/", timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(0.3)
        tasks = requests.get(f"{base}/api/tasks", timeout=5)
        wrong = requests.get(f"{base}/api/tasks", auth=(FLOWER_AUTH[0], "wrong"), timeout=5)
        right = requests.get(f"{base}/api/workers", auth=FLOWER_AUTH, timeout=30)
        command_line = " ".join(psutil.Process(process.pid).cmdline())  # exec'd: the pid is Flower's
    finally:
        process.terminate()
        process.wait(30)
    assert anonymous.status_code == 401 and tasks.status_code == 401 and wrong.status_code == 401
    assert right.status_code == 200, right.text
    assert "flower" in command_line and FLOWER_AUTH[1] not in command_line
    assert FLOWER_AUTH[1] not in log_path.read_text(errors="replace")


# --- /metrics -------------------------------------------------------------------------------------


def test_metrics_are_not_served_without_a_token_outside_development(client):
    production = {"FACEAPI_ENV": "production", "JWT_SECRET_KEY": "x" * 40}
    with override_settings(METRICS_TOKEN="", **production):
        unset = client.get("/metrics")
    with override_settings(METRICS_TOKEN="a-long-metrics-token", **production):
        anonymous = client.get("/metrics")
        right = client.get("/metrics", headers={"Authorization": "Bearer a-long-metrics-token"})
    assert unset.status_code == 403 and "METRICS_TOKEN" in unset.get_json()["error"]["message"]
    assert anonymous.status_code == 401
    assert right.status_code == 200 and "faceapi_jobs" in right.get_data(as_text=True)


# --- no email address in the logs --------------------------------------------------------------


def test_a_login_rate_limit_overrun_logs_no_email(client, caplog):
    email = f"limited-{uuid.uuid4().hex[:8]}@example.com"
    caplog.set_level(logging.INFO)
    with override_settings(RATELIMIT_LOGIN="2/minute"):
        statuses = [
            client.post("/api/v1/auth/login", json={"email": email, "password": "not the password"}).status_code
            for _ in range(3)
        ]
    assert statuses[-1] == 429
    assert "exceeded" in caplog.text  # flask-limiter logged the overrun, with its key
    assert email not in caplog.text and email.split("@")[0] not in caplog.text


def test_a_failing_statement_logs_no_parameters(services, caplog):
    from domain.db import get_engine

    email = f"query-{uuid.uuid4().hex[:8]}@example.com"
    with pytest.raises(Exception) as failure, get_engine().connect() as connection:
        connection.execute(text("SELECT 1 / 0 WHERE CAST(:email AS text) IS NOT NULL"), {"email": email})
    logging.getLogger("faceapi.test").error("query failed", exc_info=failure.value)
    assert "division by zero" in caplog.text
    assert email not in caplog.text and email not in str(failure.value)


def test_the_worker_logs_no_email(services):
    """The worker's logging as Celery sets it up (app.log.setup, what `celery worker` and beat call),
    in a process of its own: a task's log line, and an error with a traceback that quotes an
    address the way PostgreSQL's DETAIL does, reach stderr without it."""
    email = f"worker-{uuid.uuid4().hex[:8]}@example.com"
    code = f"""
import logging
from celery.utils.log import get_task_logger
from workers.celery_app import celery_app
celery_app.log.setup(loglevel="INFO", colorize=False)
get_task_logger("workers.tasks").info("enrolling for %s", {email!r})
try:
    raise ValueError("DETAIL: Key (email)=({email}) already exists.")
except ValueError:
    logging.getLogger("celery.app.trace").exception("Task failed for {email}")
"""
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "enrolling for <email>" in completed.stderr and "Task failed for <email>" in completed.stderr
    assert "Key (email)=(<email>) already exists" in completed.stderr  # the traceback, redacted
    assert email not in completed.stderr


@pytest.fixture()
def empty_database(services) -> Iterator[str]:
    """The URL of a database of its own on the tests' embedded server, dropped afterwards."""
    from sqlalchemy import create_engine

    from domain.db import get_engine

    name = f"cli_{uuid.uuid4().hex[:8]}"
    admin = create_engine(get_engine().url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield services.database_url.replace("/faceapi?", f"/{name}?", 1)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_the_admin_commands_print_the_account_id_not_the_email(empty_database):
    """`migrate` (the first admin from ADMIN_EMAIL) and `create-admin` write to stdout, which
    ends up in container logs: they name the account by its id."""
    from sqlalchemy import create_engine

    from domain.db import sqlalchemy_url

    first, second = (f"{who}-{uuid.uuid4().hex[:8]}@example.com" for who in ("first", "second"))
    env = {**os.environ, "DATABASE_URL": empty_database, "ADMIN_PASSWORD": "a long admin password"}

    def cli(*arguments: str, **extra: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, "-m", "stack.cli", *arguments],
            cwd=ROOT,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    migrated = cli("migrate", ADMIN_EMAIL=first)
    created = cli("create-admin", second, "--role", "operator")
    engine = create_engine(sqlalchemy_url(empty_database))
    try:
        with engine.connect() as connection:
            ids = dict(connection.execute(text("SELECT email, id FROM accounts")).all())
    finally:
        engine.dispose()
    assert migrated.stdout.strip() == f"created the first admin account {ids[first]}"
    assert created.stdout.strip() == f"created operator account {ids[second]}"
    output = migrated.stdout + migrated.stderr + created.stdout + created.stderr
    assert first not in output and second not in output


def test_a_database_error_that_quotes_an_email_is_logged_without_it(services):
    """PostgreSQL's DETAIL repeats the row's values whatever hide_parameters hides; the web app's
    log handler (web/logs.py) takes the address out, in this process's real stderr output."""
    email, _ = make_account("user")
    other, _ = make_account("user")
    code = f"""
import logging
from sqlalchemy import text
from domain.db import get_engine
from web.logs import configure_logging
configure_logging()
try:
    with get_engine().begin() as connection:
        connection.execute(
            text("UPDATE accounts SET email = :email WHERE email = :other"), {{"email": {email!r}, "other": {other!r}}}
        )
except Exception:
    logging.getLogger("faceapi.test").exception("update failed for %s", {email!r})
"""
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=60
    )
    assert "already exists" in completed.stderr, completed.stderr[-3000:]  # the DETAIL line was logged
    assert email not in completed.stderr and "<email>" in completed.stderr
