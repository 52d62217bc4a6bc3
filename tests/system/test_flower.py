"""Flower, as an operator watching `make run`'s stack sees it: each job is a task named for what it
does, found by the job's id, FAILURE when the job failed; the history survives Flower's restart."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests import images
from tests.conftest import ROOT, STACK_ADMIN, free_port, stack_env, wait_until_ready

FLOWER_AUTH = ("flower", "a flower password")


def _start_stack(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "stack.run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(60)


def _flower_task(flower: str, task_id: str, state: str, timeout: float = 60) -> dict:
    """Flower's own API for one task, once Flower has seen it reach `state`."""
    deadline = time.monotonic() + timeout
    info: dict = {}
    while time.monotonic() < deadline:
        answer = requests.get(f"{flower}/api/task/info/{task_id}", auth=FLOWER_AUTH, timeout=5)
        if answer.status_code == 200 and (info := answer.json()).get("state") == state:
            return info
        time.sleep(0.5)
    raise AssertionError(f"Flower never showed task {task_id} as {state}: {info}")


def _wait_for_flower_workers(flower: str, timeout: float = 60) -> None:
    """Flower takes the events of tasks that start after it has reached the workers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            answer = requests.get(f"{flower}/api/workers?refresh=1", auth=FLOWER_AUTH, timeout=10)
            if answer.status_code == 200 and any(name.startswith("worker@") for name in answer.json()):
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise AssertionError("Flower never saw the job worker")


def _submit(base: str, headers: dict, path: str, image: bytes, **fields: str) -> str:
    answer = requests.post(
        f"{base}/api/v1{path}",
        headers=headers,
        data=fields,
        files={"image": ("photo.png", image, "image/png")},
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    return answer.json()["job_id"]


def test_flower_shows_each_job_by_its_id_and_name_with_failures_as_failure(tmp_path):
    port, flower_port = free_port(), free_port()
    while flower_port == port:
        flower_port = free_port()
    base, flower = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{flower_port}"
    env = stack_env(
        tmp_path / "data",
        port,
        FLOWER_PORT=str(flower_port),
        FLOWER_BASIC_AUTH=":".join(FLOWER_AUTH),
        REAPER_INTERVAL="2",  # housekeeping runs often here: Flower must still show only the jobs
    )
    log_path = tmp_path / "run.log"
    process = _start_stack(env, log_path)
    try:
        wait_until_ready(base, log_path, process=process)
        _wait_for_flower_workers(flower)
        tokens = requests.post(
            f"{base}/api/v1/auth/login", json={"email": STACK_ADMIN[0], "password": STACK_ADMIN[1]}, timeout=10
        ).json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}

        enrolled = requests.post(
            f"{base}/api/v1/persons",
            headers=headers,
            data={"name": "Tom Hanks", "consent": "true"},
            files={"image": ("tom.png", images.tom_hanks(), "image/png")},
            timeout=10,
        ).json()
        enrollment = _flower_task(flower, enrolled["job_id"], "SUCCESS")
        assert (enrollment["name"], enrollment["uuid"]) == ("enroll", enrolled["job_id"])

        added = _submit(
            base, headers, f"/persons/{enrolled['person_id']}/faces", images.another_photo(images.tom_hanks(), 1.5)
        )
        assert _flower_task(flower, added, "SUCCESS")["name"] == "add_face"

        no_face = _submit(base, headers, "/recognize", images.no_face_photo())
        failed = _flower_task(flower, no_face, "FAILURE")
        assert (failed["name"], failed["uuid"]) == ("recognize", no_face)
        assert "no_face" in failed["exception"], failed  # the job's error code, and its message
        job = requests.get(f"{base}/api/v1/jobs/{no_face}", headers=headers, timeout=10).json()
        assert job["status"] == "failed" and job["error"]["message"] in failed["exception"]
        assert failed.get("retries") in (0, None)  # a failed job is an outcome: never retried
        assert "Task housekeeping.reap_jobs[" in log_path.read_text()  # the reaper ran, named as such,
        reaper = requests.get(
            f"{flower}/api/tasks", params={"taskname": "housekeeping.reap_jobs"}, auth=FLOWER_AUTH, timeout=10
        )
        assert reaper.status_code == 200 and reaper.json() == {}  # and stayed out of Flower's task list
    finally:
        _stop(process)

    process = _start_stack(env, log_path)  # Flower's history is kept in DATA_DIR across the restart
    try:
        wait_until_ready(base, log_path, process=process)
        _wait_for_flower_workers(flower)
        assert _flower_task(flower, no_face, "FAILURE", timeout=5)["name"] == "recognize"
    finally:
        _stop(process)
