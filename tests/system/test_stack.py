"""The processes as an operator runs them: `make run`'s supervisor, the CLI, readiness, isolation."""

from __future__ import annotations

import ast
import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from tests import images
from tests.conftest import ROOT, STACK_ADMIN, free_port, login, stack_env, wait_until_ready


def _start_stack(env: dict[str, str], log_path: Path, *, own_group: bool = False) -> subprocess.Popen:
    """`python -m stack.run`; with `own_group`, at the head of a process group of its own, as a
    shell starts a foreground command (a terminal's Ctrl-C signals that whole group)."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "stack.run"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=own_group,
        )


def _ctrl_c(process: subprocess.Popen) -> int:
    """SIGINT to the whole process group, as a terminal's Ctrl-C does."""
    os.killpg(process.pid, signal.SIGINT)
    return process.wait(90)


def _wait_for_log(log_path: Path, text: str, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while text not in log_path.read_text(errors="replace"):
        assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
        time.sleep(0.5)


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
        _enroll_folder_with_the_cli(base, headers, tmp_path / "photos")
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


def _run_cli(base: str, folder: Path, report: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "faceapi_client", "enroll", str(folder), "--gallery", "staff", "--report", str(report)],
        cwd=folder.parent,
        env={**os.environ, "FACEAPI_URL": base, "FACEAPI_EMAIL": STACK_ADMIN[0], "FACEAPI_PASSWORD": STACK_ADMIN[1]},
        capture_output=True,
        text=True,
        timeout=180,
    )


def _enroll_folder_with_the_cli(base: str, headers: dict, folder: Path) -> None:
    """`faceapi enroll` against `make run`'s stack: one failed photo, then a rerun with one more
    photo adds exactly that one (tests/stack/test_cli.py covers the command line in depth)."""
    (folder / "Tom Hanks").mkdir(parents=True)
    (folder / "Nobody").mkdir()
    (folder / "Tom Hanks" / "a.png").write_bytes(images.tom_hanks())
    (folder / "Tom Hanks" / "b.jpg").write_bytes(images.another_photo(images.tom_hanks(), scale=2.0))
    (folder / "Nobody" / "empty.jpg").write_bytes(images.no_face_photo())
    report = folder.parent / "report.json"
    first = _run_cli(base, folder, report)
    assert first.returncode == 1, first.stdout + first.stderr  # one photo has no face
    (folder / "Tom Hanks" / "c.jpg").write_bytes(images.tilted_photo(images.tom_hanks()))
    second = _run_cli(base, folder, report)
    assert second.returncode == 1, second.stdout + second.stderr
    persons = requests.get(f"{base}/api/v1/persons?gallery=staff", headers=headers, timeout=10).json()["items"]
    assert [(p["name"], p["face_count"]) for p in persons] == [("Tom Hanks", 3)]


def test_web_process_never_loads_the_model():
    """Building the app loads no model library, and nothing of workers/ (it sends through jobqueue)."""
    code = (
        "import sys; from web import create_app; create_app(); "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('insightface', 'onnxruntime', 'cv2', 'workers')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def _imported_modules(path: Path) -> set[str]:
    """Every absolute module an `import` or `from ... import` names in the file, at any depth."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", ["web", "domain", "jobqueue"])
def test_only_workers_import_workers(package):
    """web/ sends jobs by task name (jobqueue); an import of workers/, even inside a function that
    runs rarely, would tie the web process to the task code and its model libraries."""
    found = {
        str(path.relative_to(ROOT)): sorted(name for name in _imported_modules(path) if name.split(".")[0] == "workers")
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert not {path: names for path, names in found.items() if names}


def test_views_leave_the_transaction_to_the_services():
    """web/services/__init__.py's rule: a view never commits or rolls back; the service that
    changes the data does (web/idempotency.py's bookkeeping of its own rows aside)."""
    found = [
        f"{path.name}:{node.lineno}"
        for path in sorted((ROOT / "web").glob("*.py"))
        if path.name != "idempotency.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("commit", "rollback")
    ]
    assert not found


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
    monkeypatch.setattr(run, "jobs_wait_in_broker", lambda: True)  # their messages wait: not stranded rows
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


def _alive(pids: list[int], grace: float = 5.0) -> list[int]:
    """The processes still running after `grace` seconds. A grandchild (a pool process) may take a
    moment longer than its parent to exit on a loaded machine; a leak outlives any grace."""
    deadline = time.monotonic() + grace
    while True:
        alive = []
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def _stack_env(data_dir: Path, **overrides: str) -> tuple[int, dict[str, str]]:
    """stack_env with web, Flower and Redis ports that differ (free_port() may hand one out twice)."""
    port, flower_port, redis_port = _distinct_ports(3)
    env = stack_env(data_dir, port, FLOWER_PORT=str(flower_port), EMBEDDED_REDIS_PORT=str(redis_port), **overrides)
    return port, env


def _distinct_ports(count: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def test_ctrl_c_stops_web_worker_beat_and_flower_before_redis_and_postgresql(tmp_path):
    data = tmp_path / "data"
    port, env = _stack_env(data)
    log_path = tmp_path / "run.log"
    process = _start_stack(env, log_path, own_group=True)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", log_path, process=process, timeout=180)
        _wait_for_log(log_path, " ready.", process)  # the worker consumes from Redis
        children = [child.pid for child in psutil.Process(process.pid).children(recursive=True)]
        postmaster = int((data / "pg" / "postmaster.pid").read_text().split()[0])  # detached by pg_ctl
        start_of_shutdown = len(log_path.read_text(errors="replace"))
        status = _ctrl_c(process)
    finally:
        if process.poll() is None:
            _stop(process)
    shutdown = log_path.read_text(errors="replace")[start_of_shutdown:]
    assert status == 0, shutdown[-3000:]
    # Nobody lost its broker or database while stopping: Redis got its SIGTERM from the supervisor.
    for symptom in ("Traceback", "Connection to broker lost", "Cannot connect to redis", "Connection refused"):
        assert symptom not in shutdown, shutdown[-3000:]
    redis_log = (data / "redis" / "redis.log").read_text(errors="replace")
    assert "Received SIGTERM" in redis_log and "Received SIGINT" not in redis_log, redis_log[-2000:]
    lines = shutdown.splitlines()

    def line_of(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    services_stopped = min(line_of("redis stopped"), line_of("postgresql stopped"))
    for name in ("web", "worker", "beat", "flower"):
        assert line_of(f"{name} stopped (status") < services_stopped, shutdown[-3000:]
    assert line_of("faceapi.run stopped") > services_stopped
    # Nothing is left running.
    assert _alive([*children, postmaster]) == []
    assert not (data / "pg" / "postmaster.pid").exists()


def _control_socket(supervisor: subprocess.Popen) -> Path:
    """The Unix socket the stack's gunicorn master listens on for `gunicornc`."""
    master = next(
        child for child in psutil.Process(supervisor.pid).children() if "gunicorn" in " ".join(child.cmdline())
    )
    paths = [Path(c.laddr) for c in master.net_connections(kind="unix") if c.laddr]  # bound ones
    assert len(paths) == 1, paths
    return paths[0]


def _listeners(control_socket: Path) -> str:
    from gunicorn.ctl.client import ControlClient

    with ControlClient(str(control_socket), timeout=10) as client:
        return json.dumps(client.send_command("show listeners"))


def test_two_instances_on_one_host_keep_their_own_control_sockets(tmp_path):
    """gunicorn's default control socket is ~/.gunicorn/gunicorn.ctl, one per user: the second
    instance took it over and removed it when it stopped. Each now keeps its own in its DATA_DIR."""
    home = tmp_path / "home"  # the same user's home for both
    home.mkdir()
    stacks = {}
    for name in ("first", "second"):
        port, env = _stack_env(tmp_path / name / "data", HOME=str(home), XDG_RUNTIME_DIR="")
        log_path = tmp_path / f"{name}.log"
        stacks[name] = (port, log_path, _start_stack(env, log_path, own_group=True))
    try:
        sockets = {}
        for name, (port, log_path, process) in stacks.items():
            wait_until_ready(f"http://127.0.0.1:{port}", log_path, process=process, timeout=180)
            sockets[name] = _control_socket(process)
        for name, (port, _, _) in stacks.items():
            assert sockets[name].parent == (tmp_path / name / "data").resolve()
            assert f":{port}" in _listeners(sockets[name])
        assert not (home / ".gunicorn").exists()

        second = stacks["second"][2]
        assert _ctrl_c(second) == 0, stacks["second"][1].read_text()[-3000:]
        first_port, first_log, first = stacks["first"]
        assert stat.S_ISSOCK(sockets["first"].stat().st_mode)  # still there, and still the first's
        assert f":{first_port}" in _listeners(sockets["first"])
        assert requests.get(f"http://127.0.0.1:{first_port}/readyz", timeout=10).status_code == 200
        assert _ctrl_c(first) == 0, first_log.read_text()[-3000:]
    finally:
        for _, _, process in stacks.values():
            if process.poll() is None:
                _stop(process)


def test_embedded_redis_of_another_data_dir_is_not_reused(tmp_path):
    """Two instances on one EMBEDDED_REDIS_PORT would share a broker (each worker taking the other's jobs)."""
    from stack.embedded import start_redis

    port = free_port()
    first, url = start_redis(tmp_path / "first", port)
    try:
        with pytest.raises(RuntimeError, match="EMBEDDED_REDIS_PORT"):
            start_redis(tmp_path / "second", port)
        assert start_redis(tmp_path / "first", port) == (None, url)  # its own, still up: reused
    finally:
        first.terminate()
        first.wait(15)
