"""Where the CPU of one submission and of one worker run (outside the model) goes (issue 15 item 3).

The in-process setup of `bench.overhead` (embedded PostgreSQL and Redis, the Flask app through its
test client, `workers.pipeline.process_job` called directly), two measurements in one process:

- *components*: the functions named in `WEB` and `WORKER` are wrapped (no profiler running); each
  wrapper charges the process CPU spent inside it, less the CPU of wrapped calls nested in it, to
  its path of labels (``rate limiter > redis``), so the rows sum to the measured total; what no
  wrapper covers is the row ``(rest)``: Flask/werkzeug dispatch, hooks, our glue. A wrapper costs
  about a microsecond a call.
- *cProfile*: the same loops under cProfile, the top functions by own and cumulative time
  (inflated by the profiler's overhead on Python calls: read them as ranks, not milliseconds).

    .venv/bin/python -m bench.breakdown --jobs 200 [--variant NAME:VAR=VALUE[,VAR=VALUE]] [--output ...]

A variant runs the whole measurement again in a child process with those environment variables
(settings), in alternation with the baseline, for A/B figures in one run.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import json
import os
import pstats
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (label, "module:attribute" or "module:Class.method"); a module function is replaced in every
# loaded module that imported it by name. Order does not matter: nesting comes from the calls.
WEB = [
    ("test client (builds the request, reads the answer)", "flask.testing:FlaskClient.open"),
    ("server (Flask.wsgi_app)", "flask.app:Flask.wsgi_app"),
    ("multipart parsing", "werkzeug.formparser:FormDataParser.parse"),
    ("pydantic validation (web.validation._parse)", "web.validation:_parse"),
    ("upload validation decode (domain.images.validate_image)", "domain.images:validate_image"),
    ("authentication (verify_jwt_in_request)", "flask_jwt_extended.view_decorators:verify_jwt_in_request"),
    ("JWT decode (PyJWT)", "jwt.api_jwt:PyJWT.decode"),
    ("account load (Session.get)", "sqlalchemy.orm.session:Session.get"),
    ("rate limiter: check", "flask_limiter._extension:Limiter._check_request_limit"),
    ("rate limiter: X-RateLimit headers", "flask_limiter._extension:Limiter._Limiter__inject_headers"),
    ("idempotency", "web.idempotency:request_fingerprint"),
    ("budget (domain.budget.admit)", "domain.budget:admit"),
    ("budget (job_cost)", "domain.budget:job_cost"),
    ("audit row (domain.audit.record)", "domain.audit:record"),
    ("job row (domain.jobs.create_job)", "domain.jobs:create_job"),
    ("gallery lookup", "web.services.access:require_gallery"),
    ("SQLAlchemy flush", "sqlalchemy.orm.session:Session.flush"),
    ("SQLAlchemy commit", "sqlalchemy.orm.session:Session.commit"),
    ("SQLAlchemy execute", "sqlalchemy.orm.session:Session.execute"),
    ("session close (teardown)", "sqlalchemy.orm.session:Session.close"),
    ("Celery publish (jobqueue.enqueue)", "jobqueue:enqueue"),
    ("kombu Producer.publish", "kombu.messaging:Producer.publish"),
    ("JSON response (jsonify)", "flask.json.provider:DefaultJSONProvider.response"),
    ("Content-Security-Policy", "web.contract:content_security_policy"),
    ("logging (Logger.handle)", "logging:Logger.handle"),
    ("redis", "redis.client:Redis.execute_command"),
    ("psycopg execute", "psycopg:Cursor.execute"),
]
WORKER = [
    ("model (_analyze, excluded)", "workers.pipeline:_analyze"),
    ("claim (claim_with_inputs)", "domain.jobs:claim_with_inputs"),
    ("recognition (domain.recognition.recognize)", "domain.recognition:recognize"),
    ("search (domain.matching.search)", "domain.matching:search"),
    ("open-set threshold", "domain.recognition:open_set_threshold"),
    ("finish (jobs.finish)", "domain.jobs:finish"),
    ("Session.merge", "sqlalchemy.orm.session:Session.merge"),
    ("SQLAlchemy commit", "sqlalchemy.orm.session:Session.commit"),
    ("SQLAlchemy execute", "sqlalchemy.orm.session:Session.execute"),
    ("session close", "sqlalchemy.orm.session:Session.close"),
    ("announce (PUBLISH)", "domain.notifications:announce_job_ended"),
    ("logging (Logger.handle)", "logging:Logger.handle"),
    ("redis", "redis.client:Redis.execute_command"),
    ("psycopg execute", "psycopg:Cursor.execute"),
]


class Charges:
    """Exclusive process CPU by path of labels."""

    def __init__(self) -> None:
        self.seconds: dict[tuple[str, ...], float] = defaultdict(float)
        self.stack: list[str] = []
        self.nested: list[float] = []  # CPU of wrapped calls inside the current one
        self.active = True  # off: hooks that Flask bound at create_app stay wrapped, and pass through

    def wrap(self, label: str, function):
        @functools.wraps(function)
        def charged(*args, **kwargs):
            if not self.active:
                return function(*args, **kwargs)
            self.stack.append(label)
            self.nested.append(0.0)
            started = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent = time.process_time() - started
                inner = self.nested.pop()
                self.seconds[tuple(self.stack)] += spent - inner
                self.stack.pop()
                if self.nested:
                    self.nested[-1] += spent

        return charged


def _resolve(target: str):
    import importlib

    module_name, _, attribute = target.partition(":")
    owner = importlib.import_module(module_name)
    *parents, name = attribute.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    return owner, name


def install(charges: Charges, targets: list[tuple[str, str]]) -> list:
    """Wrap every target; returns what `uninstall` needs."""
    undo = []
    for label, target in targets:
        owner, name = _resolve(target)
        original = owner.__dict__.get(name, getattr(owner, name)) if isinstance(owner, type) else getattr(owner, name)
        wrapped = charges.wrap(label, original)
        if isinstance(owner, type):
            setattr(owner, name, wrapped)
            undo.append((owner, name, original))
            continue
        for module in list(sys.modules.values()):  # `from x import f` copies included
            if getattr(module, name, None) is original and module.__dict__.get(name) is original:
                setattr(module, name, wrapped)
                undo.append((module, name, original))
    return undo


def uninstall(undo: list) -> None:
    for owner, name, original in reversed(undo):
        setattr(owner, name, original)


def table(charges: Charges, total: float, jobs: int, exclude: tuple[str, ...] = ()) -> dict:
    rows = {" > ".join(path): round(1000 * s / jobs, 3) for path, s in sorted(charges.seconds.items())}
    covered = sum(s for path, s in charges.seconds.items())
    rows["(rest: not in any wrapper)"] = round(1000 * (total - covered) / jobs, 3)
    excluded = sum(s for path, s in charges.seconds.items() if path[0] in exclude)
    return {
        "total_ms": round(1000 * (total - excluded) / jobs, 3),
        "rows_ms": dict(sorted(rows.items(), key=lambda item: -item[1])),
    }


def profile_top(profiler: cProfile.Profile, jobs: int, limit: int = 30) -> dict:
    stats = pstats.Stats(profiler, stream=io.StringIO())
    entries = []
    for (filename, line, function), (_cc, calls, own, cumulative, _callers) in stats.stats.items():
        short = filename.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
        entries.append((f"{short}:{line}({function})", calls / jobs, own, cumulative))

    def top(index: int) -> list:
        ranked = sorted(entries, key=lambda e: -e[index])[:limit]
        return [
            {
                "function": f,
                "calls_a_job": round(c, 2),
                "own_ms": round(1000 * o / jobs, 3),
                "cum_ms": round(1000 * u / jobs, 3),
            }
            for f, c, o, u in ranked
        ]

    return {"by_own_time": top(2), "by_cumulative": top(3)}


def measure(jobs: int) -> dict:
    from bench.overhead import embedded_stack, model_cpu_counted, submitter

    with embedded_stack():
        web_charges, worker_charges = Charges(), Charges()
        undo = install(web_charges, WEB)
        submit, process_job, trace = submitter()
        trace.stop()
        for i in range(20):  # warm: the model loads, caches fill
            process_job(submit(i))
        web_charges.seconds.clear()
        from domain.db import get_engine

        cache = get_engine()._compiled_cache  # SQLAlchemy's statement cache: grows only on a miss
        cached_before = len(cache)
        started = time.process_time()
        job_ids = [submit(i) for i in range(jobs)]
        web_total = time.process_time() - started
        web_table = table(web_charges, web_total, jobs)
        web_table["sql_compiled_cache_new_entries"] = len(cache) - cached_before
        web_charges.active = False
        uninstall(undo)
        undo = install(worker_charges, WORKER)
        started = time.process_time()
        for job_id in job_ids:
            process_job(job_id)
        worker_total = time.process_time() - started
        worker_table = table(worker_charges, worker_total, jobs, exclude=("model (_analyze, excluded)",))
        uninstall(undo)

        # Unwrapped, plain: the totals the components are read against.
        started = time.process_time()
        job_ids = [submit(i) for i in range(jobs)]
        web_plain = time.process_time() - started
        profile = cProfile.Profile()
        profile.enable()
        profiled_ids = [submit(i) for i in range(jobs)]
        profile.disable()
        web_profile = profile_top(profile, jobs)
        with model_cpu_counted() as model:
            started = time.process_time()
            for job_id in job_ids:
                process_job(job_id)
            worker_plain = time.process_time() - started - model[0]
            profile = cProfile.Profile()
            profile.enable()
            for job_id in profiled_ids:
                process_job(job_id)
            profile.disable()
        worker_profile = profile_top(profile, jobs)
    return {
        "jobs": jobs,
        "web_cpu_ms_plain": round(1000 * web_plain / jobs, 3),
        "worker_cpu_ms_outside_model_plain": round(1000 * worker_plain / jobs, 3),
        "web": web_table,
        "worker": worker_table,
        "cprofile_web": web_profile,
        "cprofile_worker": worker_profile,
    }


def in_child(jobs: int, env: dict[str, str], tree: Path = ROOT) -> dict:
    command = [sys.executable, "-m", "bench.breakdown", "--child", "--jobs", str(jobs)]
    out = subprocess.run(command, cwd=tree, env={**os.environ, **env}, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"breakdown child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1, help="runs an arm, alternating")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:VAR=VALUE[,VAR=VALUE]")
    parser.add_argument("--output", default="overhead_breakdown")
    parser.add_argument("--reference", help="git ref measured as one more arm, 'reference' (a worktree)")
    parser.add_argument("--child", action="store_true", help="internal: one measurement, JSON on stdout")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.jobs)))
        return 0
    from bench.common import RESULTS_DIR, machine_info, write_json

    lfw = ROOT.parent / "shared" / "datasets" / "lfw-dev" / "images"
    if lfw.is_dir():
        os.environ.setdefault("LFW_DIR", str(lfw))
    from bench.overhead import worktree

    arms: dict[str, dict[str, str]] = {"baseline": {}}
    for variant in args.variant:
        name, _, assignments = variant.partition(":")
        arms[name] = dict(a.split("=", 1) for a in assignments.split(","))
    if args.reference:
        arms["reference"] = {}
    runs: dict[str, list[dict]] = {name: [] for name in arms}
    with worktree(args.reference) as reference_tree:
        for round_ in range(args.rounds):
            for name in list(arms) if round_ % 2 == 0 else list(reversed(arms)):
                tree = reference_tree if name == "reference" else ROOT
                runs[name].append(in_child(args.jobs, arms[name], tree))
                print(name, json.dumps({k: v for k, v in runs[name][-1].items() if "plain" in k}), flush=True)
    out = {
        "machine": machine_info(),
        "loadavg": os.getloadavg(),
        "reference": args.reference,
        "arms": arms,
        "runs": runs,
    }
    write_json(RESULTS_DIR / f"{args.output}.json", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
