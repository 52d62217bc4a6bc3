"""End-to-end service benchmark: the whole stack under concurrent recognize jobs vs the bare model.

    python -m bench.service [--clients 1,2,4,8,16,32] [--modes longpoll,webhook,poll:0.02]
                            [--configs 2x1,1x2] [--requests-per-level N] [--photos DIR]

For each configuration (WORKER_CONCURRENCY x ORT_THREADS: 1x2 and 2x1 by default) this starts
`python -m stack.run` in a subprocess (own temporary DATA_DIR, free ports, WEB_WORKERS=2), waits
for /readyz, logs in, enrolls a few persons, then at each client count and waiting mode runs N
recognize jobs from that many threads. Modes: `longpoll` (submit, then GET /api/v1/jobs/{id}?wait=30
once), `submitwait` (POST /api/v1/recognize?wait=30: one request answered with the result),
`webhook` (submit with a webhook_url pointing at a receiver inside this benchmark, wait for its
POST), `poll:<s>` (GET every <s> seconds). It records throughput, submit-to-result latency
percentiles, queue wait (started_at - created_at), the median of every stage of a job (layer 2:
the submission's Server-Timing header, the job's timings_ms, and wall-clock timestamps), the RSS
of every web and worker process after warm-up, and the CPU time each part of the stack used.

In the same run the bare model is measured in fresh processes: `FaceEngine(settings)` with the
same thread settings, `decode_bgr` + `analyze` over the same photos, 1 process sequentially and,
for the 2-process configuration, 2 processes in parallel (with --bare-fixed-640 also 1 process at
a fixed 640 detector size). Ratio = service / bare throughput.

Results: bench/results/service_results.json, .csv, .png and service_results_stages.png (layer 2).

With --sets lfw,real (issue 15, `make bench-real`) it runs instead: one stack, a gallery per set
(LFW: 5 people; real: the first photo of each identity of ../shared/datasets/faces with two or
more), every client level with each set's photos (real: the 100 labelled single and group
photos as they are), and beside them, alternating, the hand-written InsightFace loop and the
service's engine alone (bench/loop.py). Per level also WAL bytes a job (pg_current_wal_lsn()
before and after); per set the face counts against the loop and the NNN_k.jpg names, and rank-1.
Results: <output>.json, .csv, .png (throughput against clients, both sets).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import datetime as dt
import http.server
import importlib.util
import json
import logging
import multiprocessing as mp
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import requests

from bench.common import RESULTS_DIR, machine_info, percentiles_ms, write_csv, write_json
from bench.profile import Recorder, merge_raw, summarise

log = logging.getLogger("bench.service")
ROOT = Path(__file__).resolve().parent.parent
ADMIN_EMAIL = "bench@example.com"
ADMIN_PASSWORD = "bench-password-123"  # noqa: S105 - throwaway account in a temporary data dir
CONFIGS = ((1, 2), (2, 1))  # (WORKER_CONCURRENCY, ORT_THREADS)


# ---------------------------------------------------------------- photos


def find_photos(explicit: str | None, limit: int) -> tuple[list[Path], str]:
    candidates = []
    if explicit:
        candidates.append(Path(explicit))
    if os.environ.get("LFW_DIR"):
        candidates.append(Path(os.environ["LFW_DIR"]))
    candidates.append(ROOT.parent / "shared" / "datasets" / "lfw-dev" / "images")
    for directory in candidates:
        if directory.is_dir():
            people = sorted(p for p in directory.iterdir() if p.is_dir())
            if people:  # LFW layout: one folder per person; take one photo of each
                photos = [sorted(p.glob("*.jpg"))[0] for p in people if any(p.glob("*.jpg"))]
            else:
                photos = sorted(p for p in directory.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
            if photos:
                return photos[:limit], str(directory)
    spec = importlib.util.find_spec("insightface")
    directory = Path(next(iter(spec.submodule_search_locations))) / "data" / "images"
    photos = sorted(p for p in directory.iterdir() if p.suffix.lower() in (".jpg", ".png") and "mask" not in p.name)
    return photos[:limit], str(directory)


# ---------------------------------------------------------------- bare model


def _no_spinning() -> None:
    """Make every onnxruntime session of this process park idle intra-op threads (no busy-wait)."""
    import onnxruntime as ort

    original = ort.SessionOptions

    def options() -> ort.SessionOptions:
        opts = original()
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return opts

    ort.SessionOptions = options


def _bare_worker(
    threads: int, images: list[bytes], passes: int, barrier, queue, spinning: bool = True, fixed_size: bool = False
) -> None:
    os.environ["ORT_THREADS"] = str(threads)
    sys.path.insert(0, str(ROOT))
    if not spinning:
        _no_spinning()
    from config import get_settings
    from domain.images import decode_bgr
    from workers.engine import FaceEngine

    settings = get_settings().model_copy(update={"ort_threads": threads})
    if fixed_size:  # the detector at DET_SIZE whatever the photo's size (before the adaptive size)
        settings = settings.model_copy(update={"det_size_min": settings.det_size})
    engine = FaceEngine(settings)
    for data in images[:3]:  # warm-up
        engine.analyze(decode_bgr(data))
    barrier.wait()
    times, faces = [], 0
    started = time.perf_counter()
    for _ in range(passes):
        for data in images:
            t0 = time.perf_counter()
            faces += len(engine.analyze(decode_bgr(data)))
            times.append(time.perf_counter() - t0)
    queue.put({"wall_s": time.perf_counter() - started, "times": times, "faces": faces})


def bare_model(
    threads: int, processes: int, images: list[bytes], passes: int, spinning: bool = True, fixed_size: bool = False
) -> dict:
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(processes), ctx.Queue()
    procs = [
        ctx.Process(target=_bare_worker, args=(threads, images, passes, barrier, queue, spinning, fixed_size))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    times = [t for r in results for t in r["times"]]
    wall = max(r["wall_s"] for r in results)
    out = {
        "processes": processes,
        "ort_threads": threads,
        "ort_spinning": spinning,
        "detector_size": "fixed DET_SIZE" if fixed_size else "adaptive",
        "images": len(times),
        "wall_s": round(wall, 2),
        "throughput_img_s": round(len(times) / wall, 2),
        **{f"per_image_{k}": v for k, v in percentiles_ms(times).items()},
    }
    log.info(
        "bare model %dx%d: %.2f img/s, per image p50 %.1f ms",
        processes,
        threads,
        out["throughput_img_s"],
        out["per_image_p50_ms"],
    )
    return out


def bare_ab(images: list[bytes], rounds: int, passes: int) -> dict:
    """The bare model's thread/process splits, interleaved round by round so noise hits all alike."""
    variants = {
        "1 proc x 1 thread": (1, 1, True),
        "1 proc x 2 threads": (2, 1, True),
        "1 proc x 2 threads, no spinning": (2, 1, False),
        "2 procs x 1 thread": (1, 2, True),
    }
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for r in range(rounds):
        for name, (threads, processes, spinning) in variants.items():
            log.info("bare A/B round %d: %s", r + 1, name)
            runs[name].append(bare_model(threads, processes, images, passes, spinning))
    summary = []
    for name, results in runs.items():
        tput = [x["throughput_img_s"] for x in results]
        summary.append(
            {
                "variant": name,
                "rounds": len(results),
                "throughput_img_s_median": round(float(np.median(tput)), 2),
                "throughput_img_s_runs": tput,
                "per_image_p50_ms_median": round(float(np.median([x["per_image_p50_ms"] for x in results])), 1),
            }
        )
    base = summary[0]["throughput_img_s_median"]
    for row in summary:
        row["throughput_vs_1x1"] = round(row["throughput_img_s_median"] / base, 2)
    return {"rounds": rounds, "passes": passes, "images_per_pass": len(images), "summary": summary, "runs": runs}


# ---------------------------------------------------------------- the stack


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    def __init__(self, concurrency: int, threads: int, web_workers: int, extra_env: dict[str, str] | None = None):
        extra_env = extra_env or {}
        self.data_dir = Path(tempfile.mkdtemp(prefix="facebench-svc-"))
        self.port, self.flower_port, self.redis_port = free_port(), free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "FLOWER_BASIC_AUTH")}
        env.update(
            {
                "DATA_DIR": str(self.data_dir),
                "PORT": str(self.port),
                "FLOWER_PORT": str(self.flower_port),
                "EMBEDDED_REDIS_PORT": str(self.redis_port),
                "WORKER_CONCURRENCY": str(concurrency),
                "ORT_THREADS": str(threads),
                "WEB_WORKERS": str(web_workers),
                "ADMIN_EMAIL": ADMIN_EMAIL,
                "ADMIN_PASSWORD": ADMIN_PASSWORD,
                "RATELIMIT_ENABLED": "0",  # the benchmark submits far more than 120 jobs a minute
                "FACEAPI_ENV": "development",
                "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1:*",  # the benchmark's own webhook receiver, any port
                **extra_env,
            }
        )
        self.log_path = self.data_dir / "stack.log"
        self.log_file = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stack.run"], cwd=ROOT, env=env, stdout=self.log_file, stderr=subprocess.STDOUT
        )
        self.base = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 240) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"stack exited; see {self.log_path}:\n{self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(self.base + "/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"stack not ready after {timeout}s; see {self.log_path}")

    def processes(self) -> dict[str, list[psutil.Process]]:
        """The stack's processes by role: web (gunicorn), worker (celery), flower, postgres, redis."""
        roles: dict[str, list[psutil.Process]] = {"web": [], "worker": [], "flower": [], "postgres": [], "redis": []}
        try:
            supervisor = psutil.Process(self.process.pid)
            children = supervisor.children(recursive=True)
        except psutil.NoSuchProcess:
            return roles
        for child in children:
            try:
                cmd = " ".join(child.cmdline())
            except psutil.Error:
                continue
            if "gunicorn" in cmd:
                roles["web"].append(child)
            elif "flower" in cmd:
                roles["flower"].append(child)
            elif "celery" in cmd:
                roles["worker"].append(child)
            elif "redis-server" in cmd:
                roles["redis"].append(child)
        for proc in psutil.process_iter(["cmdline"]):
            cmd = " ".join(proc.info["cmdline"] or [])
            if "postgres" in cmd and str(self.data_dir) in cmd:  # the postmaster (pg_ctl daemonises it)
                roles["postgres"] = [proc, *proc.children(recursive=True)]
        return roles

    def memory(self) -> dict:
        out = {}
        for role, procs in self.processes().items():
            entries = []
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    entries.append(
                        {
                            "pid": p.pid,
                            "rss_mib": round(p.memory_info().rss / 2**20, 1),
                            "cmd": " ".join(p.cmdline()[:3])[:80],
                        }
                    )
            out[role] = {"processes": entries, "rss_mib_total": round(sum(e["rss_mib"] for e in entries), 1)}
        return out

    def cpu_seconds(self) -> dict[str, float]:
        out = {}
        for role, procs in self.processes().items():
            total = 0.0
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    t = p.cpu_times()
                    total += t.user + t.system
            out[role] = total
        return out

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(90)
            except subprocess.TimeoutExpired:
                log.warning("stack did not stop in 90 s; killing the supervisor")
                self.process.kill()
                self.process.wait()
        self.log_file.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        return self.process.returncode


# ---------------------------------------------------------------- clients


def parse_ts(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


class WebhookReceiver:
    """A local HTTP server that records when each job's webhook arrives (wall clock)."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.events: dict[str, threading.Event] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                arrived = time.time()
                self.send_response(204)
                self.end_headers()
                job_id = json.loads(body).get("id", "")
                with receiver.lock:
                    receiver.arrived[job_id] = arrived
                    event = receiver.events.setdefault(job_id, threading.Event())
                event.set()

            def log_message(self, *_args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, job_id: str, timeout: float) -> float | None:
        with self.lock:
            event = self.events.setdefault(job_id, threading.Event())
        return self.arrived.get(job_id) if event.wait(timeout) else None

    def close(self) -> None:
        self.server.shutdown()


def parse_server_timing(header: str) -> dict[str, float]:
    stages = {}
    for part in filter(None, (p.strip() for p in header.split(","))):
        name, _, duration = part.partition(";dur=")
        with contextlib.suppress(ValueError):
            stages[name] = float(duration)
    return stages


def _wait_for_result(session, base: str, job_id: str, mode: str, receiver, t0: float, timeout: float):
    """Wait the way the mode says; returns (job document, polls, wall-clock time the result was seen)."""
    polls = 0
    if mode == "webhook":
        seen = receiver.wait(job_id, timeout)
        doc = session.get(f"{base}/api/v1/jobs/{job_id}", timeout=30).json()  # for its timestamps only
        return doc, 0, seen
    interval = float(mode.split(":")[1]) if mode.startswith("poll") else 0.0
    while True:
        if interval:
            time.sleep(interval)
        url = f"{base}/api/v1/jobs/{job_id}" + ("" if interval else "?wait=30")
        response = session.get(url, timeout=60)
        doc = response.json()
        polls += 1
        if doc.get("status") in ("succeeded", "failed"):
            return doc, polls, time.time()
        if "Retry-After" in response.headers:  # the wait was refused by a cap: ask again later
            time.sleep(float(response.headers["Retry-After"]))
        if time.perf_counter() - t0 > timeout:
            return doc, polls, None


def run_job(
    session: requests.Session,
    base: str,
    photo: tuple[str, bytes],
    gallery: str,
    mode: str = "longpoll",
    receiver: WebhookReceiver | None = None,
    timeout: float = 120,
    form_extra: dict[str, str] | None = None,
) -> dict:
    """Submit one recognize job and wait for its result; `mode` is poll:<seconds>, longpoll, webhook or
    submitwait (POST /recognize?wait=30: the answer is the finished job, a long-poll only if it is not)."""
    t0, sent = time.perf_counter(), time.time()
    name, data = photo
    form = {"gallery": gallery, **(form_extra or {}), **({"webhook_url": receiver.url} if mode == "webhook" else {})}
    url = f"{base}/api/v1/recognize" + ("?wait=30" if mode == "submitwait" else "")
    response = session.post(url, data=form, files={"image": (name, data)}, timeout=60)
    submitted, answered = time.perf_counter(), time.time()
    server_timing = parse_server_timing(response.headers.get("Server-Timing", ""))
    if response.status_code not in (200, 202):
        return {"ok": False, "error": f"submit {response.status_code} {response.text[:200]}", "latency_s": None}
    job_id = response.json()["job_id"]
    if response.status_code == 200:  # submitwait: the job ended while the request waited
        doc, polls, seen = response.json(), 0, answered
        # The stages below are about the submission: take the wait out of it.
        waited_s = server_timing.pop("wait", 0.0) / 1000
        server_timing["total"] = server_timing.get("total", 0.0) - waited_s * 1000
        submitted, answered = submitted - waited_s, answered - waited_s
    else:
        doc, polls, seen = _wait_for_result(session, base, job_id, mode, receiver, t0, timeout)
    if seen is None:
        return {"ok": False, "error": "timeout", "latency_s": time.perf_counter() - t0}
    created, started, finished = (parse_ts(doc.get(k)) for k in ("created_at", "started_at", "finished_at"))
    started_s, finished_s = (ts.timestamp() if ts else None for ts in (started, finished))
    faces = (doc.get("result") or {}).get("faces") or []
    return {
        "faces": len(faces),
        # the best match of each face (largest face first), for the rank-1 check of the real set
        "top_matches": [(f["matches"][0]["external_id"] if f.get("matches") else None) for f in faces],
        "ok": doc["status"] == "succeeded" or (doc.get("error") or {}).get("code") == "no_face",
        "status": doc["status"],
        "error": doc.get("error"),
        "latency_s": seen - sent,
        "submit_s": submitted - t0,
        "queue_wait_s": (started - created).total_seconds() if started and created else None,
        "run_s": (finished - started).total_seconds() if finished and started else None,
        "polls": polls,
        # A timeline on the one wall clock of this machine, for the per-stage breakdown (layer 2).
        "server_timing_ms": server_timing,
        "worker_timings_ms": doc.get("timings_ms") or {},
        "after_submit_to_start_s": started_s - answered if started_s else None,
        "finish_to_seen_s": seen - finished_s if finished_s else None,
    }


def run_level(
    base: str,
    token: str,
    photos: list[tuple[str, bytes]],
    clients: int,
    n_requests: int,
    deadline_s: float,
    mode: str = "longpoll",
    receiver: WebhookReceiver | None = None,
    gallery: str = "bench",
    form_extra: dict[str, str] | None = None,
    keep_jobs: bool = False,
) -> dict:
    lock = threading.Lock()
    counter = {"next": 0}
    results: list[dict] = []
    started = time.perf_counter()

    def client() -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        while True:
            with lock:
                i = counter["next"]
                if i >= n_requests or time.perf_counter() - started > deadline_s:
                    return
                counter["next"] += 1
            try:
                r = run_job(session, base, photos[i % len(photos)], gallery, mode, receiver, form_extra=form_extra)
            except requests.RequestException as exc:
                r = {"ok": False, "error": repr(exc), "latency_s": None}
            r["photo_index"] = i % len(photos)
            with lock:
                results.append(r)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ok = [r for r in results if r["ok"]]
    waits = [r["queue_wait_s"] for r in ok if r.get("queue_wait_s") is not None]
    runs = [r["run_s"] for r in ok if r.get("run_s") is not None]
    lat = percentiles_ms([r["latency_s"] for r in ok])
    return {
        "clients": clients,
        "mode": mode,
        "requests": len(results),
        "succeeded": sum(r.get("status") == "succeeded" for r in results),
        "errors": len(results) - len(ok),
        "error_examples": [str(r.get("error"))[:200] for r in results if not r["ok"]][:3],
        "wall_s": round(wall, 2),
        "throughput_jobs_s": round(len(ok) / wall, 2),
        **{f"latency_{k}": v for k, v in lat.items()},
        **{f"queue_wait_{k}": v for k, v in percentiles_ms(waits).items()},
        **{f"worker_run_{k}": v for k, v in percentiles_ms(runs).items()},
        "submit_p50_ms": percentiles_ms([r["submit_s"] for r in ok if r.get("submit_s")])["p50_ms"],
        "polls_per_job": round(float(np.mean([r["polls"] for r in ok])), 1) if ok else None,
        "stages_p50_ms": stage_breakdown(ok),
        **(
            {
                "jobs": [
                    {k: r.get(k) for k in ("photo_index", "status", "faces", "top_matches", "latency_s")}
                    for r in results
                ]
            }
            if keep_jobs
            else {}
        ),
    }


def stage_breakdown(results: list[dict]) -> dict[str, float]:
    """Median milliseconds of each stage of a job, from the client's send to its seeing the result.

    submit (client -> 202): HTTP and upload (what the server's own total does not cover), auth and
    form parsing (the server's total minus its timed stages), validate, store, enqueue; then
    dispatch (202 -> a worker claims it: Redis, Celery); the worker's claim, decode, detect, embed,
    search, and the result write (its run minus the timed stages); then the client seeing it.
    """
    if not results:
        return {}
    rows = []
    for r in results:
        server, worker = r["server_timing_ms"], r["worker_timings_ms"]
        timed_server = sum(server.get(k, 0.0) for k in ("validate", "store", "enqueue"))
        timed_worker = sum(worker.values())
        rows.append(
            {
                "http_upload": r["submit_s"] * 1000 - server.get("total", 0.0),
                "auth_parse": server.get("total", 0.0) - timed_server,
                "validate": server.get("validate", 0.0),
                "store": server.get("store", 0.0),
                "enqueue": server.get("enqueue", 0.0),
                # started_at is set inside the claim, so half of the claim is counted on each side.
                "dispatch": (r["after_submit_to_start_s"] or 0.0) * 1000 - worker.get("claim", 0.0) / 2,
                **{k: worker.get(k, 0.0) for k in ("claim", "decode", "detect", "embed", "search")},
                "result_write": (r["run_s"] or 0.0) * 1000 - timed_worker + worker.get("claim", 0.0) / 2,
                "client_sees_result": (r["finish_to_seen_s"] or 0.0) * 1000,
            }
        )
    out = {k: round(float(np.median([row[k] for row in rows])), 2) for k in rows[0]}
    out["sum_of_medians"] = round(sum(out.values()), 1)
    out["latency_p50"] = round(float(np.median([r["latency_s"] for r in results])) * 1000, 1)
    return out


def bench_config(
    concurrency: int,
    threads: int,
    args,
    photos: list[tuple[str, bytes]],
    enroll: list[tuple[str, bytes]],
    env: dict[str, str] | None = None,
) -> dict:
    log.info("config WORKER_CONCURRENCY=%d ORT_THREADS=%d %s: starting the stack", concurrency, threads, env or "")
    stack = Stack(concurrency, threads, args.web_workers, {**args.stack_env, **(env or {})})
    receiver = WebhookReceiver()
    out: dict = {
        "worker_concurrency": concurrency,
        "ort_threads": threads,
        "web_workers": args.web_workers,
        "levels": [],
    }
    try:
        out["ready_after_s"] = round(stack.wait_ready(), 1)
        session = requests.Session()
        r = session.post(
            f"{stack.base}/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}, timeout=30
        )
        r.raise_for_status()
        token = r.json()["access_token"]
        session.headers["Authorization"] = f"Bearer {token}"
        t0 = time.perf_counter()
        for i, (name, data) in enumerate(enroll):
            resp = session.post(
                f"{stack.base}/api/v1/persons",
                data={"name": Path(name).stem, "consent": "true", "gallery": "bench", "external_id": f"p{i}"},
                files={"image": (name, data)},
                timeout=30,
            )
            resp.raise_for_status()
            job_id = resp.json()["job_id"]
            while session.get(f"{stack.base}/api/v1/jobs/{job_id}", timeout=30).json()["status"] in (
                "queued",
                "running",
            ):
                time.sleep(0.05)
        out["enroll_s"] = round(time.perf_counter() - t0, 1)
        # Warm-up: enough concurrent jobs to reach every worker process.
        run_level(stack.base, token, photos, max(2, concurrency * 2), 4 * max(2, concurrency), 60)
        out["memory_after_warmup"] = stack.memory()
        for clients, mode in [(c, m) for c in args.client_levels for m in args.mode_list]:
            n = max(args.requests_per_level if clients <= 8 else args.requests_per_level_high, 2 * clients)
            profiling = clients == args.profile_clients and mode == args.mode_list[0]
            recorder = _start_profile(stack) if profiling else None
            cpu_before = stack.cpu_seconds()
            level = run_level(stack.base, token, photos, clients, n, args.level_deadline, mode, receiver)
            cpu_after = stack.cpu_seconds()
            if recorder:
                level["profile"] = _finish_profile(recorder, args.output)
            level["cpu_s"] = {k: round(cpu_after.get(k, 0) - cpu_before.get(k, 0), 2) for k in cpu_after}
            level["cpu_s_per_job"] = {k: round(v / max(1, level["requests"]), 4) for k, v in level["cpu_s"].items()}
            out["levels"].append(level)
            log.info(
                "  clients=%2d %-10s: %5.2f jobs/s  p50 %7.1f ms  p95 %7.1f ms  queue p50 %7.1f ms"
                "  run p50 %6.1f ms  errors %d  cpu/job %s",
                clients, mode, level["throughput_jobs_s"], level["latency_p50_ms"] or -1,
                level["latency_p95_ms"] or -1,
                level["queue_wait_p50_ms"] or -1, level["worker_run_p50_ms"] or -1, level["errors"],
                level["cpu_s_per_job"],
            )  # fmt: skip
        out["memory_at_end"] = stack.memory()
    finally:
        receiver.close()
        out["stop_returncode"] = stack.stop()
    return out


def parse_variants(text_: str) -> list[tuple[str, dict[str, str]]]:
    """'base:;nocache:GALLERY_SIZE_CACHE_SECONDS=0' -> [('base', {}), ('nocache', {...})]."""
    variants = []
    for item in filter(None, text_.split(";")):
        name, _, settings = item.partition(":")
        variants.append((name, dict(kv.split("=", 1) for kv in filter(None, settings.split(",")))))
    return variants


def ab_variants(args, probe: list[tuple[str, bytes]], enroll: list[tuple[str, bytes]]) -> dict:
    """The same levels against stacks that differ only in some settings, in alternating order
    (A B, then B A, ...) so that a drift in the machine's load falls on both; medians per variant."""
    concurrency, threads = args.config_list[0]
    variants = parse_variants(args.variants)
    probe_bytes = [data for _, data in probe]
    out: dict = {"bare_before": bare_model(threads, concurrency, probe_bytes, args.bare_passes), "runs": []}
    for round_ in range(args.rounds):
        order = variants if round_ % 2 == 0 else variants[::-1]
        for name, env in order:
            run = bench_config(concurrency, threads, args, probe, enroll, env)
            out["runs"].append({"variant": name, "env": env, "round": round_, **run})
    out["bare_after"] = bare_model(threads, concurrency, probe_bytes, args.bare_passes)
    bare = (out["bare_before"]["throughput_img_s"] + out["bare_after"]["throughput_img_s"]) / 2
    summary = []
    for name, env in variants:
        levels = [lv for run in out["runs"] if run["variant"] == name for lv in run["levels"]]
        for clients, mode in dict.fromkeys((lv["clients"], lv["mode"]) for lv in levels):
            same = [lv for lv in levels if lv["clients"] == clients and lv["mode"] == mode]
            throughput = float(np.median([lv["throughput_jobs_s"] for lv in same]))
            summary.append(
                {
                    "variant": name,
                    "env": env,
                    "clients": clients,
                    "mode": mode,
                    "runs": len(same),
                    "throughput_jobs_s_median": round(throughput, 2),
                    "throughput_jobs_s_runs": [lv["throughput_jobs_s"] for lv in same],
                    "latency_p50_ms_median": round(float(np.median([lv["latency_p50_ms"] for lv in same])), 1),
                    "over_bare": round(throughput / bare, 3),
                    **{
                        f"cpu_s_per_job_{role}": round(float(np.median([lv["cpu_s_per_job"][role] for lv in same])), 4)
                        for role in same[0]["cpu_s_per_job"]
                    },
                }
            )
    base = {(r["clients"], r["mode"]): r["throughput_jobs_s_median"] for r in summary if r["variant"] == variants[0][0]}
    for row in summary:
        row[f"throughput_vs_{variants[0][0]}"] = round(
            row["throughput_jobs_s_median"] / base[(row["clients"], row["mode"])], 3
        )
        log.info("%s", {k: v for k, v in row.items() if k != "env"})
    out["bare_throughput_img_s_mean"] = round(bare, 2)
    out["summary"] = summary
    return out


def _start_profile(stack: Stack) -> Recorder:
    pids = {role: [p.pid for p in stack.processes()[role]] for role in ("web", "worker", "flower")}
    return Recorder(pids, stack.data_dir / "profile")


def _finish_profile(recorder: Recorder, output: str) -> dict:
    """Summaries by role; the merged collapsed stacks go to bench/results/<output>_profile_<role>.txt."""
    summary = {}
    for role, paths in recorder.stop().items():
        merge_raw(paths, RESULTS_DIR / f"{output}_profile_{role}.txt")
        summary[role] = summarise(paths)
        log.info("profile %s: %s", role, summary[role]["by_component_pct"])
    return summary


# ---------------------------------------------------------------- photo sets vs the hand-written loop

GROUP_NAME = re.compile(r"^\d+_(\d+)\.jpe?g$", re.IGNORECASE)  # NNN_k.jpg: k faces in the photo


@dataclasses.dataclass
class PhotoSet:
    """Probes (sent to the service and to the loop, in this order) and the gallery enrolled first."""

    name: str
    source: str
    probes: list[Path]
    enroll: list[tuple[Path, str]]  # (photo, external_id)
    labels: list[dict] = dataclasses.field(default_factory=list)  # per probe: kind, identity, named count

    def probe_items(self) -> list[tuple[str, bytes]]:
        return [(p.name, p.read_bytes()) for p in self.probes]


def lfw_set(explicit: str | None, n_photos: int) -> PhotoSet:
    """One photo each of the first people of LFW, as the earlier rounds: 5 enrolled, the rest probes."""
    paths, source = find_photos(explicit, n_photos + 5)
    enroll, probes = paths[:5], paths[5:] or paths
    return PhotoSet("lfw", source, probes, [(p, f"p{i}") for i, p in enumerate(enroll)])


def real_set(faces_dir: Path) -> PhotoSet:
    """Every labelled single-person and group photo of the real set, as they are (up to 36 MP).

    The gallery: the first photo of each identity with at least two (bench.identify's protocol
    with one enrolled photo); the probes include it, but the rank-1 check leaves it out."""
    from bench.identify import labeled_photos

    with (faces_dir / "labels.tsv").open() as handle:
        rows = [r for r in csv.DictReader(handle, delimiter="\t") if r["kind"] in ("single", "group")]
    labels = []
    for r in rows:
        named = GROUP_NAME.match(Path(r["path"]).name)
        labels.append(
            {
                "path": r["path"],
                "kind": r["kind"],
                "identity": r["identity"],
                "named_faces": int(named.group(1)) if r["kind"] == "group" and named else None,
            }
        )
    known = {identity: paths for identity, paths in labeled_photos(faces_dir).items() if len(paths) >= 2}
    enroll = [(faces_dir / paths[0], identity) for identity, paths in sorted(known.items())]
    return PhotoSet("real", str(faces_dir), [faces_dir / r["path"] for r in rows], enroll, labels)


def enroll_gallery(base: str, token: str, gallery: str, items: list[tuple[Path, str]]) -> dict:
    """Enroll one person per (photo, external_id), waiting for each job; returns what failed."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    failed, started = [], time.perf_counter()
    for path, external_id in items:
        resp = session.post(
            f"{base}/api/v1/persons?wait=30",
            data={"name": external_id, "consent": "true", "gallery": gallery, "external_id": external_id},
            files={"image": (path.name, path.read_bytes())},
            timeout=60,
        )
        resp.raise_for_status()
        doc = resp.json()
        job_id = doc["job_id"]
        while doc.get("status") not in ("succeeded", "failed"):
            doc = session.get(f"{base}/api/v1/jobs/{job_id}?wait=30", timeout=60).json()
        if doc.get("status") != "succeeded":
            failed.append({"photo": path.name, "external_id": external_id, "error": doc.get("error")})
    return {"persons": len(items) - len(failed), "failed": failed, "seconds": round(time.perf_counter() - started, 1)}


def database_uri(stack: Stack) -> str:
    from pgserver.utils import PostmasterInfo

    return PostmasterInfo.read_from_pgdata(stack.data_dir / "pg").get_uri(database="faceapi")


def wal_snapshot(uri: str) -> dict:
    """Where the WAL stands (bytes since the cluster began), pg_stat_wal's counters, the jobs table."""
    import psycopg

    with psycopg.connect(uri, autocommit=True) as conn:
        lsn = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')").fetchone()[0]
        records, fpi = conn.execute("SELECT wal_records, wal_fpi FROM pg_stat_wal").fetchone()
        checkpoints = conn.execute("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter").fetchone()[0]
        jobs_bytes, toast_bytes = conn.execute(
            "SELECT pg_total_relation_size('jobs'), pg_total_relation_size(reltoastrelid) FROM pg_class"
            " WHERE relname = 'jobs'"
        ).fetchone()
    return {
        "wal_bytes": int(lsn),
        "wal_records": int(records),
        "wal_fpi": int(fpi),
        "checkpoints": int(checkpoints),
        "jobs_table_bytes": int(jobs_bytes),
        "jobs_toast_bytes": int(toast_bytes),
    }


def wal_per_job(before: dict, after: dict, jobs: int) -> dict:
    jobs = max(1, jobs)
    return {
        "wal_bytes_per_job": round((after["wal_bytes"] - before["wal_bytes"]) / jobs),
        "wal_records_per_job": round((after["wal_records"] - before["wal_records"]) / jobs, 1),
        "wal_fpi_per_job": round((after["wal_fpi"] - before["wal_fpi"]) / jobs, 2),
        "checkpoints_during": after["checkpoints"] - before["checkpoints"],
        "jobs_toast_growth_bytes_per_job": round((after["jobs_toast_bytes"] - before["jobs_toast_bytes"]) / jobs),
    }


def quality_of_set(photo_set: PhotoSet, jobs: list[dict], loop_faces: list[int | None], threshold: float) -> dict:
    """Faces found by the service per photo against the names' counts and the loop's; rank-1 (real set)."""
    by_photo: dict[int, dict] = {}
    for job in jobs:
        if job.get("status") in ("succeeded", "failed"):
            by_photo.setdefault(job["photo_index"], job)
    out: dict = {"photos_seen": len(by_photo), "photos": len(photo_set.probes)}
    counts = {i: by_photo[i]["faces"] if i in by_photo else None for i in range(len(photo_set.probes))}
    differ = [
        {"photo": photo_set.probes[i].name, "service": counts[i], "loop": loop_faces[i]}
        for i in counts
        if counts[i] != loop_faces[i]
    ]
    out["faces_service_total"] = sum(c or 0 for c in counts.values())
    out["faces_loop_total"] = sum(c or 0 for c in loop_faces)
    out["count_differs_from_loop"] = differ
    out["undetected_by_service_found_by_loop"] = [
        photo_set.probes[i].name for i in counts if not counts[i] and (loop_faces[i] or 0) > 0
    ]
    out["undetected_by_both"] = [photo_set.probes[i].name for i in counts if not counts[i] and not loop_faces[i]]
    if photo_set.labels:
        groups = [
            {"photo": lab["path"], "named": lab["named_faces"], "service": counts[i], "loop": loop_faces[i]}
            for i, lab in enumerate(photo_set.labels)
            if lab["kind"] == "group"
        ]
        named = [g for g in groups if g["named"] is not None]
        out["groups"] = groups
        out["groups_named"] = len(named)
        out["groups_named_count_met"] = sum(g["service"] == g["named"] for g in named)
        out["groups_named_count_met_by_loop"] = sum(g["loop"] == g["named"] for g in named)
        # rank-1 with one enrolled photo (bench.identify's protocol), at the fixed threshold sent
        enrolled = {p for p, _ in photo_set.enroll}
        identities = {ext for _, ext in photo_set.enroll}
        probes = correct = 0
        misses = []
        for i, lab in enumerate(photo_set.labels):
            if lab["kind"] != "single" or lab["identity"] not in identities or "_near_dup" in lab["path"]:
                continue
            if photo_set.probes[i] in enrolled:
                continue
            probes += 1
            top = (by_photo.get(i) or {}).get("top_matches") or [None]
            correct += top[0] == lab["identity"]
            if top[0] != lab["identity"]:
                misses.append({"photo": lab["path"], "expected": lab["identity"], "got": top[0]})
        out["rank1"] = {"probes": probes, "correct": correct, "rank1_at_threshold": round(correct / max(1, probes), 4)}
        out["rank1"]["threshold"] = threshold
        out["rank1"]["misses"] = misses
        unknown = [
            i
            for i, lab in enumerate(photo_set.labels)
            if lab["kind"] == "single"
            and lab["identity"] not in identities
            and lab["identity"] != "-"
            and "_near_dup" not in lab["path"]
        ]
        out["unknown_probes"] = len(unknown)
        out["unknown_accepted"] = [
            {"photo": photo_set.labels[i]["path"], "matched": top[0]}
            for i in unknown
            if (top := ((by_photo.get(i) or {}).get("top_matches") or [None]))[0]
        ]
    return out


def sets_run(args) -> dict:
    """Both photo sets against one stack, each client level next to the loop and the engine.

    Per round and set: the loop (1 and N processes) and the engine (N processes) before, the
    service's client levels, then the loop and engine again; the next round takes the sets in the
    other order. Ratios use the median of the loop's runs around the service's levels."""
    from bench.loop import Pool
    from config import load_settings

    concurrency, threads = args.config_list[0]
    threshold = load_settings().match_threshold
    sets = {}
    for name in args.set_list:
        sets[name] = lfw_set(args.photos, args.n_photos) if name == "lfw" else real_set(Path(args.faces_dir))
    pool = Pool({name: ps.probes for name, ps in sets.items()}, processes=concurrency, threads=threads)
    stack = Stack(concurrency, threads, args.web_workers, dict(args.stack_env))
    out: dict = {
        "worker_concurrency": concurrency,
        "ort_threads": threads,
        "web_workers": args.web_workers,
        "sets": {
            name: {
                "source": ps.source,
                "probes": len(ps.probes),
                "probe_bytes_mean": round(float(np.mean([p.stat().st_size for p in ps.probes]))),
                "enroll_persons": len(ps.enroll),
                "baselines": [],
                "levels": [],
            }
            for name, ps in sets.items()
        },
    }
    form_extra = {"max_faces": str(args.max_faces), "threshold": str(threshold)}
    try:
        out["ready_after_s"] = round(stack.wait_ready(), 1)
        r = requests.post(
            f"{stack.base}/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}, timeout=30
        )
        r.raise_for_status()
        token = r.json()["access_token"]
        uri = database_uri(stack)
        items = {name: ps.probe_items() for name, ps in sets.items()}
        for name, ps in sets.items():
            out["sets"][name]["enrollment"] = enroll_gallery(stack.base, token, name, ps.enroll)
            log.info("enrolled %s: %s", name, out["sets"][name]["enrollment"])
            run_level(stack.base, token, items[name], 4, 8, 60, args.mode_list[0], gallery=name, form_extra=form_extra)
        for round_ in range(args.rounds):
            order = list(sets) if round_ % 2 == 0 else list(sets)[::-1]
            levels = args.client_levels if round_ == 0 else args.repeat_client_levels
            for name in order:
                entry = out["sets"][name]
                passes = max(1, args.min_loop_photos // len(sets[name].probes))

                def baselines(when: str, name=name, entry=entry, passes=passes, round_=round_) -> None:
                    # one process alone only where the one-client target needs it (LFW): the real set's
                    # large photos make every baseline run cost 10-20 s
                    runs = (("loop", 1),) if name == "lfw" else ()
                    for kind, procs in (*runs, ("loop", concurrency), ("engine", concurrency)):
                        res = pool.run(kind, name, procs, passes)
                        entry["baselines"].append({"round": round_, "when": when, **res})

                baselines("before")
                for clients in levels:
                    n = max(len(items[name]) if name == "real" else args.requests_per_level, 2 * clients)
                    if clients > 8 and name != "real":
                        n = max(args.requests_per_level_high, 2 * clients)
                    cpu_before, wal_before = stack.cpu_seconds(), wal_snapshot(uri)
                    level = run_level(
                        stack.base, token, items[name], clients, n, args.level_deadline, args.mode_list[0],
                        gallery=name, form_extra=form_extra, keep_jobs=True,
                    )  # fmt: skip
                    cpu_after, wal_after = stack.cpu_seconds(), wal_snapshot(uri)
                    level["round"] = round_
                    level["cpu_s"] = {k: round(cpu_after.get(k, 0) - cpu_before.get(k, 0), 2) for k in cpu_after}
                    level["cpu_s_per_job"] = {
                        k: round(v / max(1, level["requests"]), 4) for k, v in level["cpu_s"].items()
                    }
                    level["wal"] = wal_per_job(wal_before, wal_after, level["requests"])
                    entry["levels"].append(level)
                    log.info(
                        "  %s clients=%2d: %6.2f jobs/s  p50 %7.1f ms  errors %d  cpu/job %s  WAL/job %s B",
                        name, clients, level["throughput_jobs_s"], level["latency_p50_ms"] or -1, level["errors"],
                        level["cpu_s_per_job"], level["wal"]["wal_bytes_per_job"],
                    )  # fmt: skip
                if args.batch:
                    entry.setdefault("batch_levels", []).append(
                        batch_level(stack, uri, token, items[name], args, {"gallery": name, **form_extra}, round_)
                    )
                baselines("after")
        if args.profile_clients:  # after the measured levels: py-spy costs CPU of its own
            for name in sets:
                recorder = _start_profile(stack)
                level = run_level(
                    stack.base, token, items[name], args.profile_clients, len(items[name]) if name == "real" else 200,
                    args.level_deadline, args.mode_list[0], gallery=name, form_extra=form_extra,
                )  # fmt: skip
                level["profile"] = _finish_profile(recorder, f"{args.output}_{name}")
                out["sets"][name]["profiled_level"] = level
        out["memory_at_end"] = stack.memory()
    finally:
        out["stop_returncode"] = stack.stop()
        pool.close()
    for name, ps in sets.items():
        entry = out["sets"][name]
        loop_runs = [b for b in entry["baselines"] if b["kind"] == "loop"]
        entry["quality"] = quality_of_set(
            ps, [j for lv in entry["levels"] for j in lv["jobs"]], loop_runs[0]["faces_by_photo"], threshold
        )
        entry["targets"] = set_targets(entry, concurrency, args)
        for lv in entry["levels"]:
            lv.pop("jobs", None)
    return out


def batch_level(stack: Stack, uri: str, token: str, photos, args, form: dict[str, str], round_: int) -> dict:
    """Every photo of the set once, in jobs of --batch photos from --batch-clients clients."""
    from bench.ceiling import measured_level

    jobs = max(2 * args.batch_clients, -(-len(photos) // args.batch))
    level = measured_level(stack, uri, token, photos, args.batch_clients, jobs, args.batch, form=form)
    level["round"] = round_
    log.info(
        "  batch of %d, %d clients: %.2f photos/s  p50 %.1f ms a job  errors %d  cpu ms a photo %s",
        args.batch, args.batch_clients, level["photos_s"], level["latency_p50_ms"] or -1, level["errors"],
        level["cpu_ms_per_photo"],
    )  # fmt: skip
    return level


def _median(values: list[float]) -> float | None:
    return round(float(np.median(values)), 3) if values else None


def set_targets(entry: dict, concurrency: int, args) -> dict:
    """The issue's ratios from this set's runs: medians over rounds of the service and the baselines."""

    def base(kind: str, procs: int, key: str) -> float | None:
        return _median([b[key] for b in entry["baselines"] if b["kind"] == kind and b["processes"] == procs])

    def level(clients: int, key: str) -> float | None:
        return _median([lv[key] for lv in entry["levels"] if lv["clients"] == clients and lv[key] is not None])

    def cpu(clients: int, role: str) -> float | None:
        return _median([lv["cpu_s_per_job"][role] for lv in entry["levels"] if lv["clients"] == clients])

    loop_n = base("loop", concurrency, "throughput_photos_s")
    engine_n = base("engine", concurrency, "throughput_photos_s")
    loop_1_p50 = base("loop", 1, "per_photo_p50_ms")
    engine_cpu = base("engine", concurrency, "cpu_s_per_photo")
    out = {
        "loop_photos_s": loop_n,
        "loop_1proc_per_photo_p50_ms": loop_1_p50,
        "engine_photos_s": engine_n,
        "engine_cpu_s_per_photo": engine_cpu,
        "loop_cpu_s_per_photo": base("loop", concurrency, "cpu_s_per_photo"),
    }
    for clients in sorted({lv["clients"] for lv in entry["levels"]}):
        jobs_s = level(clients, "throughput_jobs_s")
        worker = cpu(clients, "worker")
        out[f"c{clients}"] = {
            "service_jobs_s": jobs_s,
            "service_over_loop": round(jobs_s / loop_n, 3) if jobs_s and loop_n else None,
            "service_over_engine": round(jobs_s / engine_n, 3) if jobs_s and engine_n else None,
            "latency_p50_ms": level(clients, "latency_p50_ms"),
            "cpu_s_per_job": {role: cpu(clients, role) for role in ("web", "worker", "postgres", "redis", "flower")},
            "worker_cpu_s_per_job_outside_model": round(worker - engine_cpu, 4)
            if worker is not None and engine_cpu
            else None,
            "wal_bytes_per_job": _median(
                [lv["wal"]["wal_bytes_per_job"] for lv in entry["levels"] if lv["clients"] == clients]
            ),
        }
    if batches := entry.get("batch_levels"):
        photos_s = _median([lv["photos_s"] for lv in batches])
        out["batch"] = {
            "photos_per_job": batches[0]["photos_per_job"],
            "clients": batches[0]["clients"],
            "service_photos_s": photos_s,
            "service_over_loop": round(photos_s / loop_n, 3) if photos_s and loop_n else None,
            "cpu_ms_per_photo": {
                role: _median([lv["cpu_ms_per_photo"][role] for lv in batches])
                for role in batches[0]["cpu_ms_per_photo"]
            },
            "wal_bytes_per_photo": _median([lv["wal"]["wal_bytes_per_job"] / lv["photos_per_job"] for lv in batches]),
            "faces": [lv["faces"] for lv in batches],
        }
    one = out.get("c1", {}).get("latency_p50_ms")
    if one is not None and loop_1_p50:
        out["one_client_p50_minus_loop_per_photo_ms"] = round(one - loop_1_p50, 1)
    return out


def plot_sets(payload: dict, path: Path) -> None:
    """Throughput against clients for each photo set, the loop's and the engine's photos/s beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(payload["sets"])
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        entry = payload["sets"][name]
        clients = sorted({lv["clients"] for lv in entry["levels"]})
        jobs_s = [entry["targets"][f"c{c}"]["service_jobs_s"] for c in clients]
        ax.plot(clients, jobs_s, "o-", color="tab:blue", label="service (POST /recognize?wait=30), median")
        for lv in entry["levels"]:
            ax.plot(lv["clients"], lv["throughput_jobs_s"], ".", color="tab:blue", alpha=0.4)
        t = entry["targets"]
        if t.get("loop_photos_s"):
            label = f"hand-written loop, {payload['worker_concurrency']} processes (cv2.imread, SCRFD 640, ArcFace)"
            ax.axhline(t["loop_photos_s"], color="tab:red", linestyle="--", label=label)
        if t.get("engine_photos_s"):
            ax.axhline(
                t["engine_photos_s"],
                color="tab:green",
                linestyle=":",
                label=f"service's engine alone, {payload['worker_concurrency']} processes",
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("jobs / s (photos / s for the baselines)")
        ax.set_title(f"{name}: {entry['probes']} photos, mean {entry['probe_bytes_mean'] / 1000:.0f} kB")
        ax.set_ylim(bottom=0)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    markers = ["o", "^", "v", "D"]
    for color, cfg in zip(colors, payload["configs"], strict=False):
        label = f"{cfg['worker_concurrency']} worker x {cfg['ort_threads']} thread(s)"
        for marker, mode in zip(markers, payload["modes"], strict=False):
            levels = [lv for lv in cfg["levels"] if lv["mode"] == mode]
            tag = f"{label}, {mode}"
            clients = [lv["clients"] for lv in levels]
            ax1.plot(
                clients, [lv["throughput_jobs_s"] for lv in levels], f"{marker}-", color=color, label=f"service, {tag}"
            )
            ax2.plot(clients, [lv["latency_p50_ms"] for lv in levels], f"{marker}-", color=color, label=f"p50, {tag}")
            ax2.plot(clients, [lv["latency_p95_ms"] for lv in levels], f"{marker}:", color=color, label=f"p95, {tag}")
        bare = cfg.get("bare", {}).get("throughput_img_s")
        if bare:
            ax1.axhline(bare, color=color, linestyle="--", label=f"bare model, {label}")
        per_image = cfg.get("bare_single", {}).get("per_image_p50_ms")
        if per_image:
            ax2.axhline(per_image, color=color, linestyle="--", alpha=0.6, label=f"bare per-image p50, {label}")
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("concurrent clients")
    ax1.set_ylabel("jobs / s")
    ax1.set_title("Recognize throughput")
    ax1.set_ylim(bottom=0)
    ax2.set_xscale("log", base=2)
    ax2.set_yscale("log")
    ax2.set_xlabel("concurrent clients")
    ax2.set_ylabel("submit-to-result latency (ms)")
    ax2.set_title("Latency")
    for ax in (ax1, ax2):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_stages(payload: dict, path: Path) -> None:
    """Layer 2: one stacked bar per configuration and waiting mode, from the 1-client levels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [
        (f"{cfg['worker_concurrency']}x{cfg['ort_threads']}, {lv['mode']}", lv["stages_p50_ms"])
        for cfg in payload["configs"]
        for lv in cfg["levels"]
        if lv["clients"] == 1 and lv.get("stages_p50_ms")
    ]
    if not bars:
        return
    stages = [k for k in bars[0][1] if k not in ("sum_of_medians", "latency_p50")]
    cmap = plt.get_cmap("tab20")
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.6 * len(bars)))
    for row, (_, values) in enumerate(bars):
        left = 0.0
        for i, stage in enumerate(stages):
            width = max(0.0, values.get(stage, 0.0))
            ax.barh(row, width, left=left, color=cmap(i), label=stage if row == 0 else None)
            left += width
        ax.text(left + 1, row, f"{values['latency_p50']:.0f} ms (p50 latency)", va="center", fontsize=8)
    ax.set_yticks(range(len(bars)), [label for label, _ in bars])
    ax.invert_yaxis()
    ax.set_xlabel("milliseconds (median of each stage, one client)")
    ax.set_title("Where the time of one recognize job goes")
    ax.legend(ncol=7, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.35 - 0.05 * len(bars)))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,2,4,8,16,32")
    parser.add_argument("--requests-per-level", type=int, default=150)
    parser.add_argument("--requests-per-level-high", type=int, default=100, help="for levels above 8 clients")
    parser.add_argument("--level-deadline", type=float, default=60.0, help="stop submitting after this many seconds")
    parser.add_argument("--photos", default=None, help="directory of photos (LFW layout or flat)")
    parser.add_argument("--n-photos", type=int, default=40)
    parser.add_argument("--bare-passes", type=int, default=2)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument(
        "--modes",
        default="longpoll",
        help="how clients wait, comma-separated: longpoll (?wait=30), submitwait, webhook, poll:<seconds>;"
        " each level runs once per mode, and the first mode is the one the targets use",
    )
    parser.add_argument(
        "--stack-env", action="append", default=[], metavar="NAME=VALUE", help="extra settings for the stack"
    )
    parser.add_argument(
        "--bare-fixed-640", action="store_true", help="also time the bare model at a fixed 640 detector size"
    )
    parser.add_argument("--configs", default="1x2,2x1", help="WORKER_CONCURRENCYxORT_THREADS,...")
    parser.add_argument("--output", default="service_results")
    parser.add_argument(
        "--variants",
        default="",
        help="A/B instead of the usual run: 'name:NAME=VALUE,...;name2:...' stacks differing only in those"
        " settings, each running every level, --rounds times in alternating order (first --configs entry)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="with --variants")
    parser.add_argument(
        "--profile-clients",
        type=int,
        default=0,
        metavar="N",
        help="record the web, worker and flower processes with py-spy while the N-client level runs",
    )
    parser.add_argument(
        "--bare-ab", type=int, default=0, metavar="ROUNDS", help="only compare bare-model thread/process splits"
    )
    parser.add_argument(
        "--sets",
        default="",
        help="instead of the usual run: photo sets (lfw, real) against one stack, each beside the hand-written"
        " InsightFace loop and the service's engine (bench.loop), first --configs entry, first --modes entry",
    )
    parser.add_argument("--faces-dir", default=str(ROOT.parent / "shared" / "datasets" / "faces"))
    parser.add_argument("--max-faces", type=int, default=100, help="with --sets: max_faces of every recognize job")
    parser.add_argument("--repeat-clients", default="1,8", help="with --sets: the levels of rounds after the first")
    parser.add_argument("--min-loop-photos", type=int, default=80, help="with --sets: passes of the baselines")
    parser.add_argument("--batch", type=int, default=0, help="with --sets: also jobs of this many photos (`images`)")
    parser.add_argument("--batch-clients", type=int, default=2, help="with --sets and --batch")
    args = parser.parse_args(argv)
    args.set_list = [x for x in args.sets.split(",") if x]
    args.repeat_client_levels = [int(c) for c in args.repeat_clients.split(",") if c]
    args.client_levels = [int(c) for c in args.clients.split(",") if c]
    args.mode_list = [m for m in args.modes.split(",") if m]
    args.stack_env = dict(item.split("=", 1) for item in args.stack_env)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",") if c]
    args.config_list = configs

    if args.set_list:
        started = time.perf_counter()
        result = {
            "benchmark": "bench.service --sets",
            "command": "python -m bench.service " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": machine_info(),
            "mode": args.mode_list[0],
            **sets_run(args),
        }
        result["total_s"] = round(time.perf_counter() - started, 1)
        result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        write_json(RESULTS_DIR / f"{args.output}.json", result)
        rows = []
        for name, entry in result["sets"].items():
            for b in entry["baselines"]:
                rows.append({"set": name, "what": f"{b['kind']} x{b['processes']}", "round": b["round"],
                             "when": b["when"], "throughput": b["throughput_photos_s"],
                             "p50_ms": b["per_photo_p50_ms"], "cpu_s_per_unit": b["cpu_s_per_photo"]})  # fmt: skip
            for lv in entry["levels"]:
                rows.append({"set": name, "what": f"service {lv['clients']} clients", "round": lv["round"],
                             "throughput": lv["throughput_jobs_s"], "p50_ms": lv["latency_p50_ms"],
                             "p95_ms": lv["latency_p95_ms"], "errors": lv["errors"],
                             **{f"cpu_s_per_job_{k}": v for k, v in lv["cpu_s_per_job"].items()},
                             "wal_bytes_per_job": lv["wal"]["wal_bytes_per_job"]})  # fmt: skip
            log.info("targets %s: %s", name, json.dumps(entry["targets"]))
            log.info("quality %s: %s", name, json.dumps({k: v for k, v in entry["quality"].items() if k != "groups"}))
        write_csv(RESULTS_DIR / f"{args.output}.csv", rows)
        plot_sets(result, RESULTS_DIR / f"{args.output}.png")
        return 0

    paths, source = find_photos(args.photos, args.n_photos + 5)
    photos = [(p.name, p.read_bytes()) for p in paths]
    enroll, probe = photos[:5], photos[5:] or photos
    log.info("photos: %d from %s (%d enrolled persons)", len(photos), source, len(enroll))
    probe_bytes = [data for _, data in probe]
    if args.bare_ab:
        result = {"benchmark": "bench.service --bare-ab", "machine": machine_info()}
        result.update(bare_ab(probe_bytes, args.bare_ab, args.bare_passes))
        write_json(RESULTS_DIR / "service_bare_ab.json", result)
        write_csv(
            RESULTS_DIR / "service_bare_ab.csv",
            [{k: v for k, v in row.items() if k != "throughput_img_s_runs"} for row in result["summary"]],
        )
        for row in result["summary"]:
            log.info("%s", row)
        return 0

    if args.variants:
        result = {
            "benchmark": "bench.service --variants",
            "command": "python -m bench.service " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": machine_info(),
            "photos": {"source": source, "count": len(probe), "enrolled_persons": len(enroll)},
            **ab_variants(args, probe, enroll),
        }
        write_json(RESULTS_DIR / f"{args.output}.json", result)
        write_csv(
            RESULTS_DIR / f"{args.output}.csv", [{k: v for k, v in r.items() if k != "env"} for r in result["summary"]]
        )
        return 0

    payload: dict = {
        "benchmark": "bench.service",
        "command": "python -m bench.service " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "photos": {"source": source, "count": len(probe), "enrolled_persons": len(enroll)},
        "modes": args.mode_list,
        "stack_env": args.stack_env,
        "configs": [],
    }
    started = time.perf_counter()
    for concurrency, threads in configs:
        cfg: dict = {}
        # Bare model first, while nothing else of ours runs.
        cfg["bare_single"] = bare_model(threads, 1, probe_bytes, args.bare_passes)
        if args.bare_fixed_640:
            cfg["bare_single_fixed_640"] = bare_model(threads, 1, probe_bytes, args.bare_passes, fixed_size=True)
        cfg["bare"] = (
            bare_model(threads, concurrency, probe_bytes, args.bare_passes) if concurrency > 1 else cfg["bare_single"]
        )
        cfg.update(bench_config(concurrency, threads, args, probe, enroll))
        reference = [lv for lv in cfg["levels"] if lv["mode"] == args.mode_list[0]]
        peak = max(reference, key=lambda lv: lv["throughput_jobs_s"]) if reference else None
        one = next((lv for lv in reference if lv["clients"] == 1), None)
        if peak:
            ratio = peak["throughput_jobs_s"] / cfg["bare"]["throughput_img_s"]
            cfg["targets"] = {
                "peak_throughput_jobs_s": peak["throughput_jobs_s"],
                "peak_at_clients": peak["clients"],
                "bare_throughput_img_s": cfg["bare"]["throughput_img_s"],
                "service_over_bare": round(ratio, 3),
                "ratio_ge_0.90": ratio >= 0.90,
            }
            if one:
                budget = cfg["bare_single"]["per_image_p50_ms"] + 25
                cfg["targets"].update(
                    {
                        "one_client_p50_ms": one["latency_p50_ms"],
                        "bare_per_image_p50_ms_plus_25": round(budget, 1),
                        "one_client_overhead_ms": round(
                            one["latency_p50_ms"] - cfg["bare_single"]["per_image_p50_ms"], 1
                        ),
                        "one_client_p50_met": one["latency_p50_ms"] <= budget,
                    }
                )
            log.info("targets %dx%d: %s", concurrency, threads, cfg["targets"])
        payload["configs"].append(cfg)
    payload["total_s"] = round(time.perf_counter() - started, 1)

    rows = []
    for cfg in payload["configs"]:
        for lv in cfg["levels"]:
            rows.append(
                {
                    "worker_concurrency": cfg["worker_concurrency"],
                    "ort_threads": cfg["ort_threads"],
                    "bare_throughput_img_s": cfg["bare"]["throughput_img_s"],
                    "bare_per_image_p50_ms": cfg["bare_single"]["per_image_p50_ms"],
                    **{
                        k: v
                        for k, v in lv.items()
                        if k not in ("error_examples", "cpu_s", "cpu_s_per_job", "stages_p50_ms")
                    },
                    **{f"cpu_s_per_job_{k}": v for k, v in lv["cpu_s_per_job"].items()},
                    **{f"stage_p50_ms_{k}": v for k, v in lv["stages_p50_ms"].items()},
                }
            )
    write_json(RESULTS_DIR / f"{args.output}.json", payload)
    write_csv(RESULTS_DIR / f"{args.output}.csv", rows)
    plot(payload, RESULTS_DIR / f"{args.output}.png")
    plot_stages(payload, RESULTS_DIR / f"{args.output}_stages.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
