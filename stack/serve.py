"""The service's processes by role, each command line defined once: `python -m stack.serve ROLE`.

    web      gunicorn with gunicorn.conf.py (bind, workers, threads, timeouts, control socket)
    worker   a Celery worker running jobs (concurrency, pool and the rest in workers/celery_app.py)
    webhooks a Celery worker delivering webhooks only (threads, no model): slow receivers never
             hold a job worker
    beat     Celery beat, the periodic tasks (run exactly one)
    flower   Flower, the Celery monitor
    migrate  apply the migrations and create the first admin from ADMIN_EMAIL / ADMIN_PASSWORD
    backup   pg_dump the database (stack/backup.py: `backup /backups --keep 14`)

The image's entrypoint (`docker run faceapi worker`), docker-compose, the Kubernetes manifests
and `make run` (stack/run.py) all start the processes through `command()`, so there is no copy
of a command line to keep equal. Extra words are appended (a later option wins: `worker
--concurrency 4`); anything that is not a role runs as given (`docker run faceapi python -m
stack.cli create-admin EMAIL`). The process replaces this one (exec), so it gets the signals.
"""

from __future__ import annotations

import os
import sys

from config import ROOT_DIR, env_variable, get_settings, get_settings_or_exit
from jobqueue import QUEUE_NAME, WEBHOOK_QUEUE

GUNICORN_CONFIG = ROOT_DIR / "gunicorn.conf.py"
CELERY_APP = "workers.celery_app"
# One node name per host (%h), so that replicas and scaled containers never share one; stack/run.py's
# watchdog and the compose healthcheck ping it as worker@<hostname>.
WORKER_NODE = "worker@%h"
WEBHOOK_NODE = "webhooks@%h"
# Deliveries wait on the network, not the CPU: threads, many of them, in one process.
WEBHOOK_THREADS = 16
# Gossip (worker-to-worker events) and mingle (a start-up sync between workers) serve nothing here,
# and Gossip's restart after a lost broker fails in kombu (AttributeError on the closed connection's
# `hostname` or `connection_errors`), which could take the worker down on every Redis loss.
WORKER_STEPS_OFF = ("--without-gossip", "--without-mingle")
ROLES = ("web", "worker", "webhooks", "beat", "flower", "migrate", "backup")


# What each role connects to outside development (which starts embedded PostgreSQL and Redis
# instead). Without it Celery would retry its own default broker (amqp://guest@localhost) for
# minutes and gunicorn would fail per request: the role refuses to start instead, naming them.
ROLE_NEEDS = {
    "web": ("database_url", "redis_url", "jwt_secret_key"),
    "worker": ("database_url", "redis_url"),
    "webhooks": ("database_url", "redis_url"),
    "beat": ("redis_url",),
    "flower": ("redis_url",),
    "migrate": ("database_url",),
    "backup": ("database_url",),
}


class RoleRefused(RuntimeError):
    """A role that must not start with the settings it was given."""


def check_required(role: str) -> None:
    """Refuse a production role whose connections are not configured, naming every missing one."""
    settings = get_settings()
    if not settings.is_production:
        return
    missing = [
        env_variable(name)
        for name in ROLE_NEEDS.get(role, ())
        if name not in settings.model_fields_set or not getattr(settings, name)
    ]
    if missing:
        files = ", ".join(f"{name}_FILE" for name in missing)
        raise RoleRefused(
            f"{role}: {', '.join(missing)} must be set when FACEAPI_ENV={settings.env} "
            f"(or {files}: a file holding the value, e.g. a Docker or Kubernetes secret)."
        )


def flower_options() -> list[str]:
    """Flower shows every task's arguments and results and can control the workers: outside
    development it needs basic auth (refused without), and without auth it listens on loopback only."""
    settings = get_settings()
    auth = settings.flower_basic_auth
    if not auth:
        if settings.is_production:
            raise RoleRefused(
                "flower: FLOWER_BASIC_AUTH (user:password, or FLOWER_BASIC_AUTH_FILE) must be set outside "
                "development: Flower shows every task and can control the workers."
            )
        return [f"--address={flower_address()}", f"--port={settings.flower_port}", *flower_history()]
    # Flower reads several pairs separated by commas (user:password,user2:password2).
    if not all(user and password for user, _, password in (pair.partition(":") for pair in auth.split(","))):
        raise RoleRefused(
            "flower: FLOWER_BASIC_AUTH must be user:password (both non-empty; a comma separates two pairs, "
            "so a password cannot hold one)."
        )
    # The credentials go in the environment (role_environment), not here: `ps` shows every local user the argv.
    return [f"--address={flower_address()}", f"--port={settings.flower_port}", *flower_history()]


# Flower writes its task history to disk this often (milliseconds), and as it stops: a crash loses a minute at most.
FLOWER_SAVE_INTERVAL_MS = 60_000


def flower_history() -> list[str]:
    """Flower keeps its task history across restarts (its persistent mode) in DATA_DIR/flower.db:
    `make run`'s data directory, the containers' /var/lib/faceapi volume."""
    database = get_settings().data_dir / "flower.db"
    return ["--persistent=True", f"--db={database}", f"--state_save_interval={FLOWER_SAVE_INTERVAL_MS}"]


def flower_address() -> str:
    """Where Flower listens (and `make run` says it does): HOST with basic auth, loopback without."""
    settings = get_settings()
    return settings.host if settings.flower_basic_auth else "127.0.0.1"


def role_environment(role: str) -> dict[str, str]:
    """Variables the role's process needs beyond this one's: Flower reads FLOWER_BASIC_AUTH itself,
    which may have come from FLOWER_BASIC_AUTH_FILE (a secret file) and so not be in os.environ.
    A process's environment is readable by its user only, unlike its command line."""
    auth = get_settings().flower_basic_auth if role == "flower" else None
    return {"FLOWER_BASIC_AUTH": auth} if auth else {}


def command(role: str, *extra: str) -> list[str]:
    """The argv of one role's process."""
    python = sys.executable
    celery = [python, "-m", "celery", "-A", CELERY_APP]
    if role == "web":
        return [python, "-m", "gunicorn", "--config", str(GUNICORN_CONFIG), *extra]
    if role == "worker":
        options = ["--hostname", WORKER_NODE, "--queues", QUEUE_NAME, *WORKER_STEPS_OFF]
        return [*celery, "worker", "--loglevel", "INFO", *options, *extra]
    if role == "webhooks":
        pool = ["--pool", "threads", "--concurrency", str(WEBHOOK_THREADS)]
        return [
            *celery,
            "worker",
            "--loglevel",
            "INFO",
            "--hostname",
            WEBHOOK_NODE,
            "--queues",
            WEBHOOK_QUEUE,
            *WORKER_STEPS_OFF,
            *pool,
            *extra,
        ]
    if role == "beat":
        return [*celery, "beat", "--loglevel", "INFO", *extra]
    if role == "flower":
        return [*celery, "flower", *flower_options(), *extra]
    if role == "migrate":
        return [python, "-m", "stack.cli", "migrate", *extra]
    if role == "backup":
        return [python, "-m", "stack.backup", "dump", *extra]
    raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv) or ["web"]
    if argv[0] in ("-h", "--help"):
        print(__doc__)
        return
    if argv[0] in ROLES:
        get_settings_or_exit()  # a wrong setting stops here, named, before gunicorn or Celery starts
    try:
        if argv[0] in ROLES:
            check_required(argv[0])
        words = command(argv[0], *argv[1:]) if argv[0] in ROLES else argv
    except RoleRefused as refused:
        sys.exit(str(refused))  # the reason on stderr, status 1
    os.environ.update(role_environment(argv[0]))  # the exec'd process inherits it
    os.execvp(words[0], words)


if __name__ == "__main__":
    main()
