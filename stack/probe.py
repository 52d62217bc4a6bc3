"""`python -m stack.probe worker|webhooks`: the workers' liveness probe in the deployments
(Kubernetes livenessProbe, compose healthcheck), with `make run`'s watchdog rule.

It checks the Celery worker of this host (`ROLE@hostname`, stack/serve.py's node name) once, by
stack.run.check_worker, and exits 1 when the check fails: the worker does not answer a ping while
the broker is up, or (the job worker) it answers but has let jobs wait WORKER_STALL_SECONDS with
none started while their messages wait in the broker. The orchestrator's failure threshold plays
the supervisor's WORKER_LIVENESS_FAILURES.

It exits 0 when the broker or the database does not answer (within `--deadline` seconds): an
outage is /readyz's and the alerts' to report, and restarting every worker would not end it. For
WORKER_STALL_SECONDS after one it looks for no stall, as the supervisor does: jobs that waited
out the outage say nothing about the worker. That moment is kept in DATA_DIR between two runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import time
from pathlib import Path

from config import get_settings
from stack.run import FAILED, OUTAGES, Check, check_worker

DEADLINE_SECONDS = 20.0  # well within the probes' timeout (30 s): a probe that times out counts as failed
STATS_TIMEOUT_SECONDS = 5.0


def worker_uptime(hostname: str, timeout: float = STATS_TIMEOUT_SECONDS) -> float | None:
    """How long the worker has been up, as it says itself (Celery's stats); None without an answer.
    Not this probe's own clock: the probe runs afresh each time, and outlives no restart."""
    from jobqueue import app

    try:
        replies = app().control.inspect(destination=[hostname], timeout=timeout).stats() or {}
    except Exception:  # kombu raises many types for an unreachable broker
        return None
    stats = replies.get(hostname)
    return float(stats["uptime"]) if stats and "uptime" in stats else None


class QuietAfterOutage:
    """When the last outage seen by a probe of this worker ends the quiet (a wall-clock time in a file)."""

    def __init__(self, data_dir: Path, hostname: str):
        self.path = data_dir / f"probe-{hostname}.quiet-until"

    def now_quiet(self) -> bool:
        try:
            return time.time() < float(self.path.read_text())
        except (OSError, ValueError):
            return False

    def outage(self, stall: float) -> None:
        with contextlib.suppress(OSError):  # a read-only DATA_DIR: the quiet is lost, not the verdict
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(f"{time.time() + stall}\n")


def describe(hostname: str, found: Check, stall: float) -> str:
    if found is Check.stalled:
        return (
            f"{hostname} {found.value}: jobs have waited over {stall:g} s (WORKER_STALL_SECONDS) with none "
            "started while their messages wait in the broker (a stalled consumer)"
        )
    if found in OUTAGES:
        return f"{hostname} {found.value}: an outage, not the worker's fault (no restart)"
    return f"{hostname} {found.value}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stack.probe",
        description="Check this host's Celery worker by make run's watchdog rule: exit 1 when the check "
        "fails, 0 otherwise (a broker or database outage included).",
    )
    parser.add_argument("role", choices=("worker", "webhooks"), help="the worker's role (stack/serve.py)")
    parser.add_argument(
        "--deadline",
        type=float,
        default=DEADLINE_SECONDS,
        help="seconds to wait for the broker and the database: then it exits 0",
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    hostname = f"{args.role}@{socket.gethostname()}"
    # Only the job worker takes jobs: the webhooks worker is pinged only.
    stall = settings.worker_stall_seconds if args.role == "worker" else 0.0
    quiet = QuietAfterOutage(settings.data_dir, hostname)

    def too_slow(*_: object) -> None:  # a broker or database that hangs: an outage too
        quiet.outage(stall)
        print(f"{hostname}: no answer from the broker or the database in {args.deadline:g} s (no restart)", flush=True)
        os._exit(0)

    signal.signal(signal.SIGALRM, too_slow)
    signal.setitimer(signal.ITIMER_REAL, args.deadline)
    found = check_worker(hostname, stall, lambda: worker_uptime(hostname), quiet.now_quiet())
    signal.setitimer(signal.ITIMER_REAL, 0)
    if found in OUTAGES and stall > 0:
        quiet.outage(stall)
    print(describe(hostname, found, stall), flush=True)
    return 1 if found in FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
