"""`make run`: embedded services (when not configured), migrations, then web + worker + Flower.

Stops everything cleanly on Ctrl-C or SIGTERM, and stops everything when any process dies.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

from config import get_settings
from domain.accounts import bootstrap_admin
from domain.schema import upgrade
from stack.embedded import ensure_services

log = logging.getLogger("faceapi.run")
STOP_GRACE_SECONDS = 30


def process_commands() -> dict[str, list[str]]:
    settings = get_settings()
    python = sys.executable
    flower_auth = [f"--basic-auth={settings.flower_basic_auth}"] if settings.flower_basic_auth else []
    return {
        "web": [
            python,
            "-m",
            "gunicorn",
            "--bind",
            f"{settings.host}:{settings.port}",
            "--workers",
            str(settings.web_workers),
            # Threads, so that long-polls (GET /jobs/{id}?wait=N) do not hold a whole worker process.
            "--worker-class",
            "gthread",
            "--threads",
            "8",
            "--access-logfile",
            "-",
            "--graceful-timeout",
            "20",
            "web:create_app()",
        ],
        "worker": [
            python,
            "-m",
            "celery",
            "-A",
            "workers.celery_app",
            "worker",
            "--concurrency",
            str(settings.worker_concurrency),
            "--pool",
            "prefork",
            "--loglevel",
            "INFO",
            "--task-events",
            "--hostname",
            "worker@%h",
        ],
        "beat": [
            python,
            "-m",
            "celery",
            "-A",
            "workers.celery_app",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(settings.data_dir / "celerybeat-schedule"),
        ],
        "flower": [
            python,
            "-m",
            "celery",
            "-A",
            "workers.celery_app",
            "flower",
            f"--address={settings.host}",
            f"--port={settings.flower_port}",
            *flower_auth,
        ],
    }


class Supervisor:
    def __init__(self) -> None:
        self.processes: dict[str, subprocess.Popen] = {}
        self.stopping = False

    def start(self, commands: dict[str, list[str]]) -> None:
        for name, command in commands.items():
            # Each child in its own process group, so Ctrl-C reaches us and we stop them in order.
            self.processes[name] = subprocess.Popen(command, env=os.environ.copy(), start_new_session=True)

    def request_stop(self, *_: object) -> None:
        self.stopping = True

    def wait(self) -> int:
        while not self.stopping:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    log.error("%s exited with status %s; stopping everything", name, process.returncode)
                    return 1
            time.sleep(0.5)
        return 0

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    services = ensure_services()
    supervisor = Supervisor()
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    status = 1
    try:
        upgrade()
        created = bootstrap_admin()
        if created:
            log.info("created the first admin account %s", created)
        supervisor.start(process_commands())
        settings = get_settings()
        print(
            f"\n  API:     http://{settings.host}:{settings.port}/api/v1  (OpenAPI: /api/v1/openapi.json)"
            f"\n  Flower:  http://{settings.host}:{settings.flower_port}"
            f"\n  Services: {', '.join(services.started) or 'external'}; data in {settings.data_dir}"
            "\n  Ctrl-C stops everything.\n",
            flush=True,
        )
        status = supervisor.wait()
    finally:
        log.info("stopping")
        supervisor.stop()
        services.stop()
        log.info("stopped")
    return status


if __name__ == "__main__":
    sys.exit(main())
