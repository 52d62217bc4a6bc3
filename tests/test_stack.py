"""The processes as an operator runs them: `make run`'s supervisor, the CLI, readiness, isolation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests import images
from tests.conftest import ROOT, free_port, login, stack_env, wait_until_ready


def _start_stack(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "stack.run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )


def _stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(60)


def _wait_job(base: str, headers: dict, job_id: str) -> dict:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        job = requests.get(f"{base}/api/v1/jobs/{job_id}", headers=headers, timeout=5).json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


def test_make_run_serves_stops_cleanly_and_keeps_data(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = stack_env(tmp_path / "data", port)
    log_path = tmp_path / "run.log"

    process = _start_stack(env, log_path)
    try:
        wait_until_ready(base, log_path, process=process)
        tokens = requests.post(
            f"{base}/api/v1/auth/login",
            json={"email": "root@example.com", "password": "a long admin password"},
            timeout=10,
        ).json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        enrolled = requests.post(
            f"{base}/api/v1/persons",
            headers=headers,
            data={"name": "Tom Hanks", "consent": "true"},
            files={"image": ("tom.png", images.tom_hanks(), "image/png")},
            timeout=10,
        ).json()
        assert _wait_job(base, headers, enrolled["job_id"])["status"] == "succeeded"
        assert "Flower:" in log_path.read_text()
        _enroll_folder_with_the_client(base, tmp_path / "photos")
    finally:
        status = _stop(process)
    assert status == 0, log_path.read_text()[-3000:]
    assert not (tmp_path / "data" / "pg" / "postmaster.pid").exists()  # PostgreSQL was stopped
    assert "stopped" in log_path.read_text()

    process = _start_stack(env, log_path)  # the same data directory
    try:
        wait_until_ready(base, log_path, process=process)
        person = requests.get(f"{base}/api/v1/persons/{enrolled['person_id']}", headers=headers, timeout=10)
        assert person.status_code == 200  # tokens and data survived the restart
        assert person.json()["face_count"] == 1
    finally:
        assert _stop(process) == 0


def _run_client(base: str, folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "client.enroll",
            str(folder),
            "--api",
            base,
            "--email",
            "root@example.com",
            "--chunk",
            "2",
        ],
        cwd=ROOT,
        env={**os.environ, "FACEAPI_PASSWORD": "a long admin password"},
        capture_output=True,
        text=True,
        timeout=180,
    )


def _enroll_folder_with_the_client(base: str, folder: Path) -> None:
    """The command-line client enrolls a folder tree, reports, and resumes without re-sending."""
    (folder / "Tom Hanks").mkdir(parents=True)
    (folder / "Nobody").mkdir()
    (folder / "Tom Hanks" / "a.png").write_bytes(images.tom_hanks())
    (folder / "Tom Hanks" / "b.jpg").write_bytes(images.another_photo(images.tom_hanks(), scale=2.0))
    (folder / "Nobody" / "empty.jpg").write_bytes(images.no_face_photo())
    first = _run_client(base, folder)
    assert first.returncode == 1, first.stdout + first.stderr  # one photo has no face
    report = json.loads((folder / "enroll-report.json").read_text())
    assert {name: entry["status"] for name, entry in report.items()} == {
        "Tom Hanks/a.png": "succeeded",
        "Tom Hanks/b.jpg": "succeeded",
        "Nobody/empty.jpg": "failed",
    }
    assert report["Tom Hanks/a.png"]["person_id"] == report["Tom Hanks/b.jpg"]["person_id"]
    (folder / "Tom Hanks" / "c.jpg").write_bytes(images.another_photo(images.tom_hanks(), scale=1.5))
    second = _run_client(base, folder)  # resumes: only the new and the failed photos are sent
    assert "2 photo" in second.stderr or "2/2" in second.stderr, second.stderr
    report = json.loads((folder / "enroll-report.json").read_text())
    assert report["Tom Hanks/c.jpg"]["person_id"] == report["Tom Hanks/a.png"]["person_id"]


def test_web_process_never_loads_the_model():
    code = (
        "import sys; from web import create_app; create_app(); "
        "bad = [m for m in ('insightface', 'onnxruntime', 'cv2') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_readiness_reports_services(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_cli_creates_an_admin(client, services):
    def create_admin() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "stack.cli", "create-admin", "cli-admin@example.com"],
            cwd=ROOT,
            env=dict(os.environ, ADMIN_PASSWORD="another long password"),
            capture_output=True,
            text=True,
            timeout=60,
        )

    result = create_admin()
    assert result.returncode == 0, result.stderr
    assert login(client, "cli-admin@example.com", "another long password")["access_token"]
    again = create_admin()
    assert again.returncode == 1
    assert "already exists" in again.stderr


def test_openapi_document_lists_the_routes(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    for path in (
        "/api/v1/auth/login",
        "/api/v1/persons",
        "/api/v1/persons/{person_id}",
        "/api/v1/recognize",
        "/api/v1/jobs/{job_id}",
    ):
        assert path in spec["paths"]


def test_the_watchdog_restarts_only_a_worker_that_stops_answering_while_the_broker_is_up(monkeypatch):
    """Pure logic of stack.run.WorkerWatchdog; the real thing is in test_faults (a SIGSTOPped worker)."""
    from stack import run

    answers = iter([None, False, True, False, None, False])  # None: the broker is down
    monkeypatch.setattr(run, "worker_answers", lambda hostname: next(answers))
    watchdog = run.WorkerWatchdog(interval=0.001, failures=2, hostname="worker@test", grace=0)
    decisions = []
    for _ in range(6):
        time.sleep(0.002)
        decisions.append(watchdog.should_restart())
    # Broker down neither counts nor resets; an answer resets the count; the second miss restarts.
    assert decisions == [False, False, False, False, False, True]


def test_the_watchdog_restarts_a_worker_that_answers_but_lets_jobs_wait(monkeypatch):
    from stack import run

    stalled = iter([True, False, True, True])
    monkeypatch.setattr(run, "worker_answers", lambda hostname: True)
    monkeypatch.setattr(run, "queue_stalled", lambda seconds: next(stalled))
    watchdog = run.WorkerWatchdog(interval=0.001, failures=2, hostname="worker@test", grace=0, stall=10)
    time.sleep(0.002)
    assert not watchdog.should_restart()  # up for less than `stall`: the queue is not asked
    watchdog.started -= 11
    decisions = []
    for _ in range(4):
        time.sleep(0.002)
        decisions.append(watchdog.should_restart())
    assert decisions == [False, False, False, True]  # a moving queue resets the count


def test_the_watchdog_gives_a_starting_worker_its_grace(monkeypatch):
    from stack import run

    monkeypatch.setattr(run, "worker_answers", lambda hostname: False)
    watchdog = run.WorkerWatchdog(interval=0.001, failures=1, hostname="worker@test", grace=60)
    time.sleep(0.002)
    assert not watchdog.should_restart()  # still loading its models
    watchdog.started -= 61
    time.sleep(0.002)
    assert watchdog.should_restart()
