"""CPU and round trips a job spends around the model (issue 15: web <= 5 ms, worker <= 4 ms).

Two measurements, each taken for the code under test and for a reference tree (a git worktree
of an earlier commit) in the same run, alternating, so the machine's load hits both alike:

- *round trips* (in-process, deterministic): embedded PostgreSQL and Redis as in the tests, the
  Flask app through its test client, and `workers.pipeline.process_job` called directly. Each
  PostgreSQL round trip is counted from libpq's own protocol trace (one per simple Query or
  extended-protocol Sync: BEGIN, COMMIT and the pool's pre-ping included), each SQL statement
  through SQLAlchemy's `before_cursor_execute`, and Redis commands from the server's
  `INFO commandstats`. The worker's Celery plumbing is not in this count (no Celery worker).
- *CPU* (the real stack, `bench.service.Stack`: gunicorn, a prefork Celery worker with one
  child, Flower, PostgreSQL, Redis): N recognitions of small LFW photos sent one after the
  other with `?wait=30`; each role's process CPU (psutil) over the N jobs, divided by N. The
  worker's CPU a job outside the model is that minus the engine's own CPU a photo on the same
  photos (`workers.pipeline._analyze` in this process: decode, detect, embed). Redis commands
  and PostgreSQL transactions a job (all roles, Celery's included) are read from the servers.

    .venv/bin/python -m bench.overhead --reference HEAD~1 [--candidate HEAD] --jobs 200 --rounds 2 \
        [--after-variant no_events:CELERY_TASK_EVENTS=0]

`--after-variant` adds an arm: the candidate tree with other settings. Output:
`bench/results/<--output>.json` (default `overhead.json`).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import inspect
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("bench.overhead")
GALLERY = "overhead"
PROBES = 20  # distinct LFW photos, sent in turn


# ---------------------------------------------------------------- round trips (child process)


def redis_commands(client) -> Counter:
    stats = client.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): entry["calls"] for name, entry in stats.items()})


class PostgresTrace:
    """libpq's protocol trace of every pooled connection, into one file per connection."""

    def __init__(self, engine) -> None:
        from sqlalchemy import event

        self.directory = Path(tempfile.mkdtemp(prefix="overhead-trace-"))
        self.files: list = []
        self.connections: list = []
        self.statements: Counter = Counter()
        event.listen(engine, "connect", self._trace)
        event.listen(engine, "before_cursor_execute", self._statement)

    def _trace(self, dbapi_connection, _record) -> None:
        handle = (self.directory / f"{len(self.files)}.trace").open("w")
        self.files.append(handle)
        dbapi_connection.pgconn.trace(handle.fileno())
        self.connections.append(dbapi_connection.pgconn)

    def stop(self) -> None:
        """No more tracing (it costs CPU of its own): before the in-process CPU measurement."""
        for pgconn in self.connections:
            pgconn.untrace()
        self.connections.clear()

    def _statement(self, _conn, _cursor, statement: str, *_args) -> None:
        self.statements[" ".join(statement.split())[:60]] += 1

    def round_trips(self) -> int:
        """A simple Query or an extended-protocol Sync is one wait for the server."""
        ctypes.CDLL(None).fflush(None)  # libpq writes through stdio buffers
        total = 0
        for path in self.directory.glob("*.trace"):
            for line in path.read_text(errors="replace").splitlines():
                fields = line.split("\t")
                if len(fields) > 3 and fields[1] == "F" and fields[3].split(" ")[0] in ("Query", "Sync"):
                    total += 1
        return total


def count_round_trips(jobs: int) -> dict:
    """Submit `jobs` recognitions through the Flask app and run each in-process; counts a job."""
    with embedded_stack():
        return _count_in_stack(jobs)


@contextlib.contextmanager
def embedded_stack():
    """Embedded PostgreSQL and Redis in a fresh data directory, migrated, as in the tests."""
    data_dir = Path(tempfile.mkdtemp(prefix="overhead-count-"))
    os.environ.update(
        {
            "FACEAPI_ENV": "development",
            "DATA_DIR": str(data_dir),
            "EMBEDDED_REDIS_PORT": str(_free_port()),
            "JWT_SECRET_KEY": "overhead-bench-secret-not-for-production-use",
            "BCRYPT_ROUNDS": "4",
            "WORKER_CONCURRENCY": "1",
            "ORT_THREADS": "1",
            "RATELIMIT_SUBMIT": "100000/minute",  # limited (its Redis commands count), never reached
        }
    )
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    from config import get_settings

    get_settings.cache_clear()
    from domain.schema import upgrade
    from stack.embedded import ensure_services

    running = ensure_services()
    try:
        upgrade()
        yield
    finally:
        running.stop()


def _count_in_stack(jobs: int) -> dict:
    from domain.notifications import redis_client

    submit, process_job, trace = submitter()
    process_job(submit(0))  # warm: the model loads, the gallery's size is cached
    redis = redis_client()
    phases = {}
    job_ids: list[str] = []
    for phase in ("web", "worker"):
        trips, statements, commands = trace.round_trips(), Counter(trace.statements), redis_commands(redis)
        if phase == "web":
            job_ids = [submit(i) for i in range(jobs)]
        else:
            for job_id in job_ids:
                process_job(job_id)
        redis_delta = redis_commands(redis) - commands
        redis_delta["info"] -= 1  # our own INFO
        phases[phase] = {
            "postgres_round_trips": round((trace.round_trips() - trips) / jobs, 2),
            "sql_statements": round(sum((trace.statements - statements).values()) / jobs, 2),
            "statements": {k: round(v / jobs, 2) for k, v in (trace.statements - statements).most_common()},
            "redis_commands": round(sum(redis_delta.values()) / jobs, 2),
            "redis_by_command": {k: round(v / jobs, 2) for k, v in redis_delta.most_common() if v > 0},
        }
    trace.stop()
    phases["cpu_in_process"] = _cpu_in_process(submit, process_job, max(100, jobs))
    return phases


def submitter():
    """An admin's recognition submit(index) -> job id through the Flask test client, a gallery of
    one enrolled person, `workers.pipeline.process_job`, and the PostgreSQL trace."""
    from bench.service import find_photos
    from config import get_settings
    from domain.accounts import create_account
    from domain.db import dispose_engine, get_engine, session_scope
    from domain.models import Role
    from web import create_app
    from workers import pipeline

    dispose_engine()
    process_job = _pipeline_run(pipeline)
    trace = PostgresTrace(get_engine())
    # Trees differ in whether create_account takes the settings (pydantic-settings, issue 13).
    settings = {"settings": get_settings()} if "settings" in inspect.signature(create_account).parameters else {}
    with session_scope() as session:
        create_account(session, "overhead@example.com", "overhead-password-1", Role.admin, None, **settings)
    client = create_app().test_client()
    token = client.post(
        "/api/v1/auth/login", json={"email": "overhead@example.com", "password": "overhead-password-1"}
    ).json["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    photos, _ = find_photos(None, PROBES + 1)
    enroll = client.post(
        "/api/v1/persons",
        headers=auth,
        data={"name": "p0", "consent": "true", "gallery": GALLERY, "image": (photos[0].open("rb"), photos[0].name)},
    )
    process_job(enroll.json["job_id"])

    def submit(index: int) -> str:
        photo = photos[1 + index % (len(photos) - 1)]
        form = {"gallery": GALLERY, "image": (photo.open("rb"), photo.name)}
        response = client.post("/api/v1/recognize", headers=auth, data=form)
        assert response.status_code == 202, response.get_data(as_text=True)
        return response.json["job_id"]

    return submit, process_job, trace


def _pipeline_run(pipeline):
    """process_job(job_id) as a task calls it: with the settings and engine it hands down (trees
    differ in whether the pipeline takes them, issue 25)."""
    if "context" not in inspect.signature(pipeline.process_job).parameters:
        return pipeline.process_job
    from config import get_settings
    from workers.context import WorkerContext

    context = WorkerContext.of(get_settings())
    return lambda job_id: pipeline.process_job(job_id, context)


@contextlib.contextmanager
def model_cpu_counted() -> Iterator[list[float]]:
    """While the block runs, the process CPU spent inside the model (workers.pipeline._analyze:
    decode, detect, embed) adds up in the one-item list yielded, so a job's run can be measured
    without it."""
    import workers.pipeline as pipeline

    analyze, model_cpu = pipeline._analyze, [0.0]

    def timed_analyze(*args, **kwargs):
        started = time.process_time()
        try:
            return analyze(*args, **kwargs)
        finally:
            model_cpu[0] += time.process_time() - started

    pipeline._analyze = timed_analyze
    try:
        yield model_cpu
    finally:
        pipeline._analyze = analyze


def _cpu_in_process(submit, process_job, jobs: int) -> dict:
    """Process CPU a submission (through the Flask test client) and a job's run outside the model
    (process_job less the CPU inside workers.pipeline._analyze): our code alone, no gunicorn, no
    Celery, no other process, so the least noisy comparison of two trees on a busy machine."""
    with model_cpu_counted() as model_cpu:
        started = time.process_time()
        job_ids = [submit(i) for i in range(jobs)]
        web = time.process_time() - started
        started = time.process_time()
        for job_id in job_ids:
            process_job(job_id)
        worker = time.process_time() - started - model_cpu[0]
    return {
        "jobs": jobs,
        "web_request_cpu_ms": round(1000 * web / jobs, 2),
        "worker_cpu_ms_outside_model": round(1000 * worker / jobs, 2),
        "model_cpu_ms": round(1000 * model_cpu[0] / jobs, 2),
    }


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- CPU on the real stack


def cpu_run(tree: Path, jobs: int, extra_env: dict[str, str] | None = None) -> dict:
    """The whole stack started from `tree`; CPU a job per role over `jobs` sequential recognitions."""
    import psycopg
    import redis
    import requests

    import bench.service as service
    from bench.service import ADMIN_EMAIL, ADMIN_PASSWORD, Stack, database_uri, find_photos
    from stack.embedded import embedded_redis_url

    service.ROOT = tree  # Stack runs `python -m stack.run` in ROOT: the tree under test
    stack = Stack(1, 1, 1, {"RATELIMIT_ENABLED": "0", **(extra_env or {})})
    try:
        stack.wait_ready()
        http = requests.Session()
        login = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        token = http.post(f"{stack.base}/api/v1/auth/login", json=login, timeout=30).json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        photos, _ = find_photos(None, PROBES + 1)
        images = [(p.name, p.read_bytes()) for p in photos]
        enroll = {"name": "p0", "consent": "true", "gallery": GALLERY}
        r = http.post(f"{stack.base}/api/v1/persons?wait=30", data=enroll, files={"image": images[0]}, timeout=60)
        r.raise_for_status()

        def recognize(index: int) -> None:
            name, data = images[1 + index % (len(images) - 1)]
            url = f"{stack.base}/api/v1/recognize?wait=30"
            response = http.post(url, data={"gallery": GALLERY}, files={"image": (name, data)}, timeout=60)
            assert response.status_code == 200, response.text[:300]

        for i in range(10):  # warm every process
            recognize(i)
        uri = database_uri(stack)
        broker = redis.Redis.from_url(embedded_redis_url(stack.data_dir, stack.redis_port))  # with its password
        with psycopg.connect(uri, autocommit=True) as conn:

            def transactions() -> int:
                query = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'faceapi'"
                return conn.execute(query).fetchone()[0]

            cpu, xacts, commands = stack.cpu_seconds(), transactions(), redis_commands(broker)
            started = time.perf_counter()
            for i in range(jobs):
                recognize(i)
            wall = time.perf_counter() - started
            after_cpu, after_xacts, after_commands = stack.cpu_seconds(), transactions(), redis_commands(broker)
        redis_delta = after_commands - commands
        redis_delta["info"] -= 1
        return {
            "jobs": jobs,
            "wall_s_a_job": round(wall / jobs, 4),
            "cpu_ms_a_job": {role: round(1000 * (after_cpu[role] - cpu[role]) / jobs, 2) for role in cpu},
            "postgres_transactions_a_job": round((after_xacts - xacts - 1) / jobs, 2),
            "redis_commands_a_job": round(sum(redis_delta.values()) / jobs, 2),
            "redis_by_command": {k: round(v / jobs, 2) for k, v in redis_delta.most_common() if v > 0},
            "loadavg": [round(x, 2) for x in os.getloadavg()],
        }
    finally:
        stack.stop()


def engine_cpu_ms(passes: int) -> float:
    """The model's own process CPU a photo on the probes (the worker's pipeline, no service)."""
    os.environ.setdefault("JWT_SECRET_KEY", "overhead-bench-secret-not-for-production-use")
    os.environ["ORT_THREADS"] = "1"
    from bench.service import find_photos
    from config import get_settings
    from domain.timing import StageTimer
    from workers.engine import get_face_engine
    from workers.pipeline import _analyze

    engine = get_face_engine(get_settings())
    photos, _ = find_photos(None, PROBES + 1)
    images = [p.read_bytes() for p in photos[1:]]
    for image in images:  # warm
        _analyze(engine, image, StageTimer())
    started = time.process_time()
    for _ in range(passes):
        for image in images:
            _analyze(engine, image, StageTimer())
    return round(1000 * (time.process_time() - started) / (passes * len(images)), 2)


# ---------------------------------------------------------------- driver


def in_tree(tree: Path, *args: str) -> dict:
    """Run this file's `count` or `engine` step in a child whose imports come from `tree`."""
    command = [sys.executable, str(Path(__file__).resolve()), *args, "--tree", str(tree)]
    out = subprocess.run(command, cwd=tree, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} in {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def worktree(reference: str | None):
    """A detached checkout of `reference` for the run (None: this working tree, yielded as None)."""
    if reference is None:
        yield None
        return
    path = Path(tempfile.mkdtemp(prefix="overhead-ref-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(path), reference], cwd=ROOT, check=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False)


def summarise(runs: list[dict]) -> dict:
    def median(values: list[float]) -> float:
        values = sorted(values)
        middle = len(values) // 2
        return values[middle] if len(values) % 2 else round((values[middle - 1] + values[middle]) / 2, 2)

    roles = runs[0]["cpu_ms_a_job"].keys()
    return {
        "cpu_ms_a_job_median": {role: median([r["cpu_ms_a_job"][role] for r in runs]) for role in roles},
        "worker_outside_model_ms_median": median([r["worker_outside_model_ms"] for r in runs]),
        "redis_commands_a_job": runs[-1]["redis_commands_a_job"],
        "postgres_transactions_a_job": runs[-1]["postgres_transactions_a_job"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", nargs="?", choices=("count", "engine"), help="internal: one step in --tree")
    parser.add_argument("--tree", help="internal: the tree the step's imports come from")
    parser.add_argument("--reference", default="HEAD~1", help="git ref measured as 'before' (a worktree)")
    parser.add_argument("--candidate", help="git ref measured as 'after' (default: this working tree)")
    parser.add_argument(
        "--after-variant",
        action="append",
        default=[],
        metavar="NAME:VAR=VALUE[,VAR=VALUE]",
        help="one more arm: the 'after' tree with these settings (e.g. no_events:CELERY_TASK_EVENTS=0)",
    )
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--count-jobs", type=int, default=20)
    parser.add_argument("--count-rounds", type=int, default=3, help="in-process runs a tree (alternating)")
    parser.add_argument("--output", default="overhead")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.step == "count":
        print(json.dumps(count_round_trips(args.count_jobs)))
        return 0
    if args.step == "engine":
        print(json.dumps({"engine_cpu_ms": engine_cpu_ms(3)}))
        return 0

    from bench.common import RESULTS_DIR, machine_info, write_json

    lfw = ROOT.parent / "shared" / "datasets" / "lfw-dev" / "images"
    if lfw.is_dir():  # the same photos in every tree (a worktree's own ../shared does not exist)
        os.environ.setdefault("LFW_DIR", str(lfw))

    started = time.time()
    out: dict = {"machine": machine_info(), "uptime_at_start": _uptime(), "reference": args.reference}
    with worktree(args.reference) as before_tree, worktree(args.candidate) as after_tree:
        trees = {"before": before_tree, "after": after_tree or ROOT}
        out["before_commit"] = _commit(trees["before"])
        out["after_commit"] = _commit(trees["after"]) + (
            " + uncommitted changes" if not after_tree and _dirty() else ""
        )
        counts: dict[str, list[dict]] = {name: [] for name in trees}
        for round_ in range(args.count_rounds):
            for name in list(trees) if round_ % 2 == 0 else reversed(list(trees)):
                counts[name].append(in_tree(trees[name], "count", "--count-jobs", str(args.count_jobs)))
        out["round_trips"] = {
            name: {k: v for k, v in runs[-1].items() if k != "cpu_in_process"} for name, runs in counts.items()
        }
        out["cpu_in_process"] = {name: [r["cpu_in_process"] for r in runs] for name, runs in counts.items()}
        log.info("round trips: %s", json.dumps(out["round_trips"]))
        log.info("CPU in process: %s", json.dumps(out["cpu_in_process"]))
        arms = {"before": ("before", {}), "after": ("after", {})}
        for variant in args.after_variant:
            name, _, assignments = variant.partition(":")
            arms[name] = ("after", dict(a.split("=", 1) for a in assignments.split(",")))
        out["arms"] = {name: {"tree": tree, "env": env} for name, (tree, env) in arms.items()}
        runs: dict[str, list[dict]] = {name: [] for name in arms}
        for round_ in range(args.rounds):
            order = list(arms) if round_ % 2 == 0 else list(reversed(arms))
            for name in order:
                tree, env = arms[name]
                engine = in_tree(trees[tree], "engine")["engine_cpu_ms"]
                run = cpu_run(trees[tree], args.jobs, env)
                run["engine_cpu_ms_a_photo"] = engine
                run["worker_outside_model_ms"] = round(run["cpu_ms_a_job"]["worker"] - engine, 2)
                runs[name].append(run)
                log.info("%s round %d: %s", name, round_, json.dumps(run))
    out["runs"] = runs
    out["summary"] = {name: summarise(r) for name, r in runs.items()}
    out["uptime_at_end"] = _uptime()
    out["seconds"] = round(time.time() - started)
    path = RESULTS_DIR / f"{args.output}.json"
    write_json(path, out)
    log.info("wrote %s: %s", path, json.dumps(out["summary"]))
    return 0


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _commit(tree: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True
    ).stdout.strip()


def _dirty() -> bool:
    status = subprocess.run(
        ["git", "status", "--porcelain", "--", "domain", "workers", "web"], cwd=ROOT, capture_output=True, text=True
    )
    return bool(status.stdout.strip())


if __name__ == "__main__":
    # Run as a file, Python puts bench/ first on the path (its profile.py would shadow the
    # standard library's): the project's root replaces it, a step's tree when one is given.
    sys.path[0] = sys.argv[sys.argv.index("--tree") + 1] if "--tree" in sys.argv else str(ROOT)
    sys.exit(main())
