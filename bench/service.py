"""End-to-end service benchmark: the whole stack under concurrent recognize jobs vs the bare model.

    python -m bench.service [--clients 1,2,4,8,16,32] [--requests-per-level N] [--photos DIR]

For each configuration (WORKER_CONCURRENCY x ORT_THREADS: 1x2 and 2x1 by default) this starts
`python -m stack.run` in a subprocess (own temporary DATA_DIR, free ports, WEB_WORKERS=2), waits
for /readyz, logs in, enrolls a few persons, then at each client count runs N recognize jobs
with that many threads (submit, then poll GET /api/v1/jobs/{id} every ~20 ms until done). It
records throughput, submit-to-result latency percentiles, queue wait (started_at - created_at),
the RSS of every web and worker process after warm-up, and the CPU time each part of the stack
used. The stack is stopped with SIGTERM.

In the same run the bare model is measured in fresh processes: `FaceEngine(settings)` with the
same thread settings, `decode_bgr` + `analyze` over the same photos, 1 process sequentially and,
for the 2-process configuration, 2 processes in parallel. Ratio = service / bare throughput.

Results: bench/results/service_results.json, service_results.csv, service_results.png.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import importlib.util
import logging
import multiprocessing as mp
import os
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

log = logging.getLogger("bench.service")
ROOT = Path(__file__).resolve().parent.parent
ADMIN_EMAIL = "bench@example.com"
ADMIN_PASSWORD = "bench-password-123"  # noqa: S105 - throwaway account in a temporary data dir
POLL_INTERVAL = 0.02
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


def _bare_worker(threads: int, images: list[bytes], passes: int, barrier, queue, spinning: bool = True) -> None:
    os.environ["ORT_THREADS"] = str(threads)
    sys.path.insert(0, str(ROOT))
    if not spinning:
        _no_spinning()
    from config import get_settings
    from domain.images import decode_bgr
    from workers.engine import FaceEngine

    settings = dataclasses.replace(get_settings(), ort_threads=threads)
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


def bare_model(threads: int, processes: int, images: list[bytes], passes: int, spinning: bool = True) -> dict:
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(processes), ctx.Queue()
    procs = [
        ctx.Process(target=_bare_worker, args=(threads, images, passes, barrier, queue, spinning))
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
    def __init__(self, concurrency: int, threads: int, web_workers: int):
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


def run_job(
    session: requests.Session,
    base: str,
    photo: tuple[str, bytes],
    gallery: str,
    poll_interval: float = POLL_INTERVAL,
    timeout: float = 120,
) -> dict:
    t0 = time.perf_counter()
    name, data = photo
    response = session.post(
        f"{base}/api/v1/recognize", data={"gallery": gallery}, files={"image": (name, data)}, timeout=30
    )
    submitted = time.perf_counter()
    if response.status_code != 202:
        return {
            "ok": False,
            "error": f"submit {response.status_code} {response.text[:200]}",
            "latency_s": submitted - t0,
        }
    job_id = response.json()["job_id"]
    polls = 0
    while True:
        time.sleep(poll_interval)
        doc = session.get(f"{base}/api/v1/jobs/{job_id}", timeout=30).json()
        polls += 1
        if doc.get("status") in ("succeeded", "failed"):
            break
        if time.perf_counter() - t0 > timeout:
            return {"ok": False, "error": "timeout", "latency_s": time.perf_counter() - t0}
    done = time.perf_counter()
    created, started, finished = (parse_ts(doc.get(k)) for k in ("created_at", "started_at", "finished_at"))
    return {
        "ok": doc["status"] == "succeeded" or (doc.get("error") or {}).get("code") == "no_face",
        "status": doc["status"],
        "error": doc.get("error"),
        "latency_s": done - t0,
        "submit_s": submitted - t0,
        "queue_wait_s": (started - created).total_seconds() if started and created else None,
        "run_s": (finished - started).total_seconds() if finished and started else None,
        "polls": polls,
    }


def run_level(
    base: str,
    token: str,
    photos: list[tuple[str, bytes]],
    clients: int,
    n_requests: int,
    deadline_s: float,
    poll_interval: float = POLL_INTERVAL,
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
                r = run_job(session, base, photos[i % len(photos)], "bench", poll_interval)
            except requests.RequestException as exc:
                r = {"ok": False, "error": repr(exc), "latency_s": None}
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
        "poll_interval_ms": round(poll_interval * 1000),
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
    }


def bench_config(
    concurrency: int, threads: int, args, photos: list[tuple[str, bytes]], enroll: list[tuple[str, bytes]]
) -> dict:
    log.info("config WORKER_CONCURRENCY=%d ORT_THREADS=%d: starting the stack", concurrency, threads)
    stack = Stack(concurrency, threads, args.web_workers)
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
        for clients, poll in [(c, p) for c in args.client_levels for p in args.poll_list]:
            n = max(args.requests_per_level if clients <= 8 else args.requests_per_level_high, 2 * clients)
            cpu_before = stack.cpu_seconds()
            level = run_level(stack.base, token, photos, clients, n, args.level_deadline, poll)
            cpu_after = stack.cpu_seconds()
            level["cpu_s"] = {k: round(cpu_after.get(k, 0) - cpu_before.get(k, 0), 2) for k in cpu_after}
            level["cpu_s_per_job"] = {k: round(v / max(1, level["requests"]), 4) for k, v in level["cpu_s"].items()}
            out["levels"].append(level)
            log.info(
                "  clients=%2d poll=%3dms: %5.2f jobs/s  p50 %7.1f ms  p95 %7.1f ms  queue p50 %7.1f ms"
                "  run p50 %6.1f ms  errors %d  cpu/job %s",
                clients, level["poll_interval_ms"], level["throughput_jobs_s"], level["latency_p50_ms"] or -1,
                level["latency_p95_ms"] or -1,
                level["queue_wait_p50_ms"] or -1, level["worker_run_p50_ms"] or -1, level["errors"],
                level["cpu_s_per_job"],
            )  # fmt: skip
        out["memory_at_end"] = stack.memory()
    finally:
        out["stop_returncode"] = stack.stop()
    return out


def plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    markers = ["o", "^", "v", "D"]
    for color, cfg in zip(colors, payload["configs"], strict=False):
        label = f"{cfg['worker_concurrency']} worker x {cfg['ort_threads']} thread(s)"
        polls = sorted({lv.get("poll_interval_ms", 20) for lv in cfg["levels"]})
        for marker, poll in zip(markers, polls, strict=False):
            levels = [lv for lv in cfg["levels"] if lv.get("poll_interval_ms", 20) == poll]
            tag = f"{label}, poll {poll} ms" if len(polls) > 1 else label
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
        "--poll-intervals", default="0.02", help="seconds between polls; several: each level runs once per interval"
    )
    parser.add_argument("--configs", default="1x2,2x1", help="WORKER_CONCURRENCYxORT_THREADS,...")
    parser.add_argument("--output", default="service_results")
    parser.add_argument(
        "--bare-ab", type=int, default=0, metavar="ROUNDS", help="only compare bare-model thread/process splits"
    )
    args = parser.parse_args(argv)
    args.client_levels = [int(c) for c in args.clients.split(",") if c]
    args.poll_list = [float(p) for p in args.poll_intervals.split(",") if p]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",") if c]

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

    payload: dict = {
        "benchmark": "bench.service",
        "command": "python -m bench.service " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "photos": {"source": source, "count": len(probe), "enrolled_persons": len(enroll)},
        "poll_intervals_s": args.poll_list,
        "configs": [],
    }
    started = time.perf_counter()
    for concurrency, threads in configs:
        cfg: dict = {}
        # Bare model first, while nothing else of ours runs.
        cfg["bare_single"] = bare_model(threads, 1, probe_bytes, args.bare_passes)
        cfg["bare"] = (
            bare_model(threads, concurrency, probe_bytes, args.bare_passes) if concurrency > 1 else cfg["bare_single"]
        )
        cfg.update(bench_config(concurrency, threads, args, probe, enroll))
        reference = [lv for lv in cfg["levels"] if lv["poll_interval_ms"] == round(args.poll_list[0] * 1000)]
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
                    **{k: v for k, v in lv.items() if k not in ("error_examples", "cpu_s", "cpu_s_per_job")},
                    **{f"cpu_s_per_job_{k}": v for k, v in lv["cpu_s_per_job"].items()},
                }
            )
    write_json(RESULTS_DIR / f"{args.output}.json", payload)
    write_csv(RESULTS_DIR / f"{args.output}.csv", rows)
    plot(payload, RESULTS_DIR / f"{args.output}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
