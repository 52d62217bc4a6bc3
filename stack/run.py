"""`make run`: embedded services (when not configured), migrations, then web + worker + Flower.

Stops everything cleanly on Ctrl-C or SIGTERM, and stops everything when any process dies:
web, worker, beat and Flower first, then the embedded Redis and PostgreSQL they use. Every
child runs in a session of its own, so a terminal's Ctrl-C reaches only this supervisor.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from config import get_settings, get_settings_or_exit
from domain.accounts import bootstrap_admin
from domain.schema import upgrade
from stack import serve
from stack.embedded import EmbeddedServices, ensure_services, start_redis

log = logging.getLogger("faceapi.run")
STOP_GRACE_SECONDS = 30
RESTART_GRACE_SECONDS = 15
WORKER_START_GRACE_SECONDS = 90  # loading the models on a busy machine
# A child that exits is restarted after 1 s, then 2, 4, ... 30 s while it keeps dying; a run of a
# minute resets the back-off.
RESTART_BACKOFF_SECONDS = 1.0
RESTART_BACKOFF_MAX_SECONDS = 30.0
RESTART_BACKOFF_RESET_SECONDS = 60.0
STARTUP_SECONDS = 10.0  # a child that exits sooner after its first start cannot start: make run stops


def worker_command(concurrency: int, hostname: str, *options: str) -> list[str]:
    """The Celery worker's command line (stack/serve.py) with its own node name and pool size; the tests start it."""
    return serve.command("worker", "--concurrency", str(concurrency), "--hostname", hostname, *options)


def process_commands() -> dict[str, list[str]]:
    """web, the job worker, the webhook worker, beat and Flower as the image runs them
    (stack/serve.py: one definition each)."""
    return {role: serve.command(role) for role in ("web", "worker", "webhooks", "beat", "flower")}


def worker_answers(hostname: str, timeout: float = 5.0) -> bool | None:
    """Whether the Celery worker answers a ping through the broker; None when the broker is down
    (then nothing can answer, and restarting the worker would not help)."""
    from jobqueue import app

    celery_app = app()
    try:
        with celery_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1)
            return bool(celery_app.control.ping(destination=[hostname], timeout=timeout, connection=connection))
    except Exception:  # kombu raises many types for an unreachable broker
        return None


def queue_stalled(seconds: float) -> bool | None:
    """Whether jobs have waited `seconds` with none started meanwhile, and no gallery index is
    being built (a build holds a worker process for minutes: with one process, jobs wait for it);
    None when the database does not answer (then the workers cannot start anything either)."""
    from domain import jobs
    from domain.db import session_scope
    from domain.gallery_indexes import building

    try:
        with session_scope() as session:
            stalled = jobs.queue_stalled(session, jobs.now() - timedelta(seconds=seconds))
            return stalled and not building(session.connection())
    except Exception:  # an outage is reported by /readyz, not fixed by restarting the worker
        return None


def jobs_wait_in_broker() -> bool | None:
    """Whether job messages wait in the broker's queue (any priority); None when it is down. Jobs
    queued in the database with no message are stranded (the reaper sends them again), not
    waiting for a stuck worker."""
    from kombu.exceptions import ChannelError

    from jobqueue import QUEUE_NAME
    from workers.celery_app import celery_app

    try:
        with celery_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1)
            try:
                return connection.default_channel.queue_declare(QUEUE_NAME, passive=True).message_count > 0
            except ChannelError:  # no such queue yet: nothing waits
                return False
    except Exception:  # kombu raises many types for an unreachable broker
        return None


class Check(enum.Enum):
    """What one check of a worker found: the rule that `make run`'s watchdog and stack.probe (the
    deployments' liveness probe) share, so that both restart a worker for the same reasons."""

    answers = "answers"
    stalled = "answers but starts no jobs"
    silent = "did not answer a ping"
    unreachable = "cannot be asked: the broker does not answer"
    cannot_tell = "answers; the database or the broker did not answer the stall check"


# Not the worker's fault: restarting it would not help, and jobs that waited out the outage are no
# sign of a stuck worker (the caller keeps quiet for `stall` seconds after one).
OUTAGES = (Check.unreachable, Check.cannot_tell)
FAILED = (Check.stalled, Check.silent)


def check_worker(hostname: str, stall: float, up_for: Callable[[], float | None], quiet: bool = False) -> Check:
    """One check of the worker `hostname`. It fails (`FAILED`) when the worker does not answer a
    ping while the broker is up, or when it answers but, up for more than `stall` seconds (0:
    never; `up_for()`), has let jobs wait that long without starting any while their messages wait
    in the broker (its control channel works, its task consumer does not). `quiet`: just after an
    outage, when waiting jobs say nothing about the worker."""
    answered = worker_answers(hostname)
    if answered is None:
        return Check.unreachable
    if not answered:
        return Check.silent
    if stall <= 0 or quiet:
        return Check.answers
    uptime = up_for()
    if uptime is None or uptime <= stall:
        return Check.answers
    waiting = queue_stalled(stall)
    if not waiting:
        return Check.cannot_tell if waiting is None else Check.answers
    in_broker = jobs_wait_in_broker()
    if not in_broker:
        return Check.cannot_tell if in_broker is None else Check.answers
    return Check.stalled


class WorkerWatchdog:
    """Restarts the worker after `failures` failed checks in a row (`check_worker`).

    Celery's consumer can stay dead after the broker restarts ("Error on stopping Hub", or the
    known "worker stops consuming after Redis reconnection"): the process lives on but takes no
    more messages. Jobs that waited out a database or broker outage do not count: no stall is
    looked for while one lasts nor for `stall` seconds after.
    """

    def __init__(self, interval: float, failures: int, hostname: str, grace: float, stall: float = 0):
        self.interval, self.failures, self.hostname, self.grace = interval, failures, hostname, grace
        self.stall = stall
        self.restarted()

    def should_restart(self) -> bool:
        if self.interval <= 0 or time.monotonic() < self.next_check:
            return False
        self.next_check = time.monotonic() + self.interval
        quiet = time.monotonic() < self.quiet_until
        found = check_worker(self.hostname, self.stall, lambda: time.monotonic() - self.started, quiet)
        if found in OUTAGES:
            self.outage()
        if found is Check.unreachable:  # broker down: neither a miss nor an answer
            return False
        self.alive_once = self.alive_once or found is not Check.silent
        if found not in FAILED:
            self.missed = 0
            return False
        if not self.alive_once and time.monotonic() - self.started < self.grace:  # still loading its models
            return False
        self.missed += 1
        log.warning("worker %s %s (%d/%d)", self.hostname, found.value, self.missed, self.failures)
        return self.missed >= self.failures

    def outage(self) -> None:
        self.quiet_until = time.monotonic() + self.stall

    def restarted(self) -> None:
        self.started = self.next_check = time.monotonic()
        self.alive_once, self.missed, self.quiet_until = False, 0, 0.0


class Supervisor:
    """Runs the children; one that exits is started again after a back-off that doubles while it
    keeps failing, and the others (and the database) keep running: everything stops only on
    Ctrl-C or SIGTERM."""

    def __init__(self, watchdog: WorkerWatchdog | None = None, services: EmbeddedServices | None = None) -> None:
        self.processes: dict[str, subprocess.Popen] = {}
        # The embedded Redis, when this run started it: restarted like a child (same port, data and
        # password), since every other process needs it. PostgreSQL detaches (pg_ctl) and is not watched.
        self.services = services
        self.commands: dict[str, list[str]] = {}
        self.stopping = False
        self.watchdog = watchdog
        self.started_at: dict[str, float] = {}
        self.backoff: dict[str, float] = {}
        self.restart_at: dict[str, float] = {}

    def start(self, commands: dict[str, list[str]]) -> None:
        self.commands = commands
        if self.services is not None and self.services.redis_process is not None:
            self.processes["redis"] = self.services.redis_process
            self.started_at["redis"] = time.monotonic()
        for name in commands:
            if self.stopping:  # Ctrl-C while starting
                return
            self.spawn(name)

    def spawn(self, name: str) -> None:
        if name == "redis":
            self._spawn_redis()
            return
        # Each child in its own process group, so Ctrl-C reaches us and we stop them in order.
        # With what the role needs beyond this process's environment (Flower's credentials, which `ps` must not show).
        env = {**os.environ, **serve.role_environment(name)}
        self.processes[name] = subprocess.Popen(self.commands[name], env=env, start_new_session=True)
        self.started_at[name] = time.monotonic()

    def _spawn_redis(self) -> None:
        """The embedded Redis again, on its port with its append-only file: the queue and the token
        denylist come back as they were (up to the last second, appendfsync everysec)."""
        settings = get_settings()
        try:
            process, _ = start_redis(settings.data_dir, settings.embedded_redis_port)
        except RuntimeError:
            log.exception("redis did not start again; trying later")
            self.started_at["redis"] = time.monotonic()
            return  # still the exited process: the back-off schedules the next try
        if process is None:  # a Redis of this DATA_DIR answers already (started by hand): use it
            del self.processes["redis"]
            self.services.redis_process = None
            return
        self.services.redis_process = self.processes["redis"] = process
        self.started_at["redis"] = time.monotonic()

    def _restart_exited(self) -> bool:
        """Schedule an exited child's restart, then start it when its back-off has passed. The
        back-off starts at RESTART_BACKOFF_SECONDS, doubles up to RESTART_BACKOFF_MAX_SECONDS
        while the child keeps dying, and resets once it has run RESTART_BACKOFF_RESET_SECONDS.
        False when a child fails as it first starts (a port in use, a bad setting): that is not
        a crash to ride out, and `make run` stops with the child's error."""
        now = time.monotonic()
        for name, process in self.processes.items():
            if process.poll() is None or name in self.restart_at:
                continue
            previous = self.backoff.get(name)
            # Redis answered before anything started (stack.embedded.start_redis waits for it): an
            # exit is a crash to ride out, however soon.
            if previous is None and name != "redis" and now - self.started_at[name] < STARTUP_SECONDS:
                log.error("%s exited with status %s as it started; stopping everything", name, process.returncode)
                return False
            if previous is None or now - self.started_at[name] > RESTART_BACKOFF_RESET_SECONDS:
                delay = RESTART_BACKOFF_SECONDS
            else:
                delay = min(previous * 2, RESTART_BACKOFF_MAX_SECONDS)
            self.backoff[name] = delay
            self.restart_at[name] = now + delay
            log.error("%s exited with status %s; restarting it in %.0f s", name, process.returncode, delay)
        for name, when in list(self.restart_at.items()):
            if now >= when:
                del self.restart_at[name]
                log.info("restarting %s", name)
                self.spawn(name)
                if name == "worker" and self.watchdog:  # a new worker: its start grace, not the old one's record
                    self.watchdog.restarted()
        return True

    def request_stop(self, *_: object) -> None:
        self.stopping = True

    def wait(self) -> int:
        while not self.stopping:
            if not self._restart_exited():
                return 1
            if self.watchdog and "worker" in self.processes and self.watchdog.should_restart():
                log.error("the worker failed its checks; restarting it (unfinished jobs are re-queued)")
                self.terminate(self.processes["worker"], RESTART_GRACE_SECONDS)
                self.spawn("worker")
                self.watchdog.restarted()
            time.sleep(0.5)
        return 0

    @staticmethod
    def terminate(process: subprocess.Popen, grace: float) -> None:
        """SIGTERM the process group (and SIGCONT, so a stopped process acts on it), then SIGKILL."""
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
            os.killpg(process.pid, signal.SIGCONT)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def stop(self) -> None:
        """Stop the children; the embedded Redis is left for EmbeddedServices.stop, after them."""
        children = {name: process for name, process in self.processes.items() if name != "redis"}
        for process in children.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for name, process in children.items():
            self.terminate(process, max(0.1, deadline - time.monotonic()))
            log.info("%s stopped (status %s)", name, process.returncode)


def banner(services_started: list[str]) -> str:
    """What `make run` prints once everything started: where the API and Flower listen."""
    settings = get_settings()
    base = f"http://{settings.host}:{settings.port}"
    return (
        f"\n  API:     {base}/api/v1  (OpenAPI: /api/v1/openapi.json)"
        f"\n  Docs:    {base}/api/v1/docs  (try each call in the browser)"
        f"\n  Console: {base}/console/"
        f"\n  Health:  {base}/healthz, {base}/readyz"
        f"\n  Flower:  http://{serve.flower_address()}:{settings.flower_port}  (a job's task id is its id)"
        f"\n  Services: {', '.join(services_started) or 'external'}; data in {settings.data_dir}"
        "\n  Ctrl-C stops everything (web, worker, beat and Flower first, then Redis and PostgreSQL);"
        f"\n  from another shell: kill -INT {os.getpid()} (this supervisor; `make` itself passes on SIGTERM only).\n"
    )


def keep_out_of_git(data_dir: Path) -> None:
    """A DATA_DIR inside a checkout (`DATA_DIR=.data-2`) holds secrets and faces: whatever its
    name, git ignores it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    marker = data_dir / ".gitignore"
    if not marker.exists():
        marker.write_text("# This instance's data (make run): never in git.\n*\n")


def ports_in_use(settings) -> list[str]:
    """The ports this instance would serve that something else already holds, each with the
    variable that moves it (another `make run` holds the same defaults)."""
    taken = []
    for variable, port in (("PORT", settings.port), ("FLOWER_PORT", settings.flower_port)):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((settings.host, port))
            except OSError:
                taken.append(f"{variable}={port}")
    return taken


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = get_settings_or_exit()  # a wrong setting stops `make run` here, named, before anything starts
    if taken := ports_in_use(settings):
        raise SystemExit(
            f"faceapi: {' and '.join(taken)} already in use (another make run?): stop it, or give this "
            "instance other ports and its own DATA_DIR, e.g. DATA_DIR=.data2 PORT=8001 FLOWER_PORT=5556 "
            "EMBEDDED_REDIS_PORT=6400 make run"
        )
    keep_out_of_git(get_settings().data_dir)
    services = EmbeddedServices()
    supervisor = Supervisor(services=services)
    # From the start: a Ctrl-C while the services start lets them finish starting, then stops them.
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    status = 1
    try:
        ensure_services(services)
        settings = get_settings()
        supervisor.watchdog = WorkerWatchdog(
            settings.worker_liveness_interval,
            settings.worker_liveness_failures,
            f"worker@{socket.gethostname()}",
            grace=WORKER_START_GRACE_SECONDS,
            stall=settings.worker_stall_seconds,
        )
        upgrade()
        created = bootstrap_admin(settings)
        if created:
            log.info("created the first admin account %s", created)
        supervisor.start(process_commands())
        if not supervisor.stopping:
            print(banner(services.started), flush=True)
        status = supervisor.wait()
    finally:
        log.info("stopping")
        supervisor.stop()  # first what uses the services,
        services.stop()  # then the services
        log.info("stopped")
    return status


if __name__ == "__main__":
    sys.exit(main())
