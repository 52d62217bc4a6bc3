"""The queue's ceiling: the whole stack with a null engine (`make bench-ceiling`).

    python -m bench.ceiling [--clients 16] [--batch 16] [--rounds 3] [--jobs 400] [--real-engine]

One stack (2 worker processes x 1 ORT thread, 2 gunicorn processes, PostgreSQL, Redis and Flower on
this machine's cores, as `make bench-real`) started with bench/null_engine/ first on PYTHONPATH:
the workers' model and pixel decode are a null engine that returns one fixed face a photo at
almost no cost (bench/null_engine/sitecustomize.py; nothing in the service can select it). What is
left is what the service adds around the model: web, Celery, PostgreSQL, Redis, Flower.

Each client sends `POST /api/v1/recognize?wait=30` with real photos (../shared/datasets/faces,
else LFW, else the insightface package's samples) against a gallery enrolled first, and follows a
202 with `GET /api/v1/jobs/{id}?wait=30`. Modes, alternated round by round in one run:
`single` (one `image` a job) and, with --batch N, `batch` (N `images` parts a job). Per level:
jobs/s and photos/s, latency, CPU seconds a job and a photo of each role (psutil, every process
of the role), WAL a job (pg_current_wal_lsn()). Results: bench/results/<output>.json.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import requests

from bench.common import RESULTS_DIR, machine_info, percentiles_ms, write_json
from bench.service import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    ROOT,
    Stack,
    database_uri,
    enroll_gallery,
    find_photos,
    wal_per_job,
    wal_snapshot,
)

log = logging.getLogger("bench.ceiling")
NULL_ENGINE_PATH = Path(__file__).resolve().parent / "null_engine"
GALLERY = "ceiling"


def null_engine_env() -> dict[str, str]:
    """The environment that makes every Python process of the stack import the null engine."""
    existing = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": os.pathsep.join(filter(None, (str(NULL_ENGINE_PATH), existing)))}


def load_photos(faces_dir: Path, limit: int) -> list[Path]:
    """Real photos as they are: the labelled set's single and group photos, else LFW or samples."""
    labels = faces_dir / "labels.tsv"
    if labels.exists():
        with labels.open() as handle:
            rows = [r for r in csv.DictReader(handle, delimiter="\t") if r["kind"] in ("single", "group")]
        paths = [faces_dir / r["path"] for r in rows]
    else:
        paths, _ = find_photos(None, limit)
    return paths[:limit]


def submit(
    session: requests.Session,
    base: str,
    photos: list[tuple[str, bytes]],
    batch: bool,
    form: dict[str, str] | None = None,
) -> dict:
    """One recognize job of these photos, waited for; what the client saw."""
    t0 = time.perf_counter()
    field = "images" if batch else "image"
    files = [(field, (name, data)) for name, data in photos]
    form = form or {"gallery": GALLERY}
    response = session.post(f"{base}/api/v1/recognize?wait=30", data=form, files=files, timeout=120)
    if response.status_code not in (200, 202):
        return {"ok": False, "error": f"{response.status_code} {response.text[:200]}"}
    doc = response.json()
    while doc.get("status") not in ("succeeded", "failed"):
        doc = session.get(f"{base}/api/v1/jobs/{doc.get('id') or doc['job_id']}?wait=30", timeout=60).json()
    result = doc.get("result") or {}
    faces = [len(p["faces"]) for p in result["photos"]] if "photos" in result else [len(result.get("faces") or [])]
    return {
        "ok": doc["status"] == "succeeded",
        "latency_s": time.perf_counter() - t0,
        "error": doc.get("error"),
        "faces_by_photo": faces,
    }


def run_level(
    base: str,
    token: str,
    photos: list[tuple[str, bytes]],
    clients: int,
    jobs: int,
    batch: int,
    form: dict[str, str] | None = None,
) -> dict:
    """`jobs` jobs from `clients` threads; a batch job takes the next `batch` photos."""
    lock, counter, results = threading.Lock(), {"next": 0}, []

    def client() -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        while True:
            with lock:
                i = counter["next"]
                if i >= jobs:
                    return
                counter["next"] += 1
            if batch:
                chosen = [photos[(i * batch + k) % len(photos)] for k in range(batch)]
            else:
                chosen = [photos[i % len(photos)]]
            try:
                r = submit(session, base, chosen, batch=bool(batch), form=form)
            except requests.RequestException as exc:
                r = {"ok": False, "error": repr(exc)}
            with lock:
                results.append(r)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ok = [r for r in results if r["ok"]]
    per_job = max(1, batch)
    return {
        "clients": clients,
        "mode": f"batch{batch}" if batch else "single",
        "photos_per_job": per_job,
        "jobs": len(results),
        "errors": len(results) - len(ok),
        "error_examples": [str(r.get("error"))[:200] for r in results if not r["ok"]][:3],
        "wall_s": round(wall, 2),
        "jobs_s": round(len(ok) / wall, 2),
        "photos_s": round(len(ok) * per_job / wall, 2),
        "faces": sum(sum(r["faces_by_photo"]) for r in ok),
        "faces_s": round(sum(sum(r["faces_by_photo"]) for r in ok) / wall, 2),
        **{f"latency_{k}": v for k, v in percentiles_ms([r["latency_s"] for r in ok]).items()},
    }


def cpu_seconds(stack: Stack) -> dict[str, float]:
    """CPU seconds of each role of the stack, and of this benchmark's clients (the same cores)."""
    times = psutil.Process().cpu_times()
    return {**stack.cpu_seconds(), "bench_clients": times.user + times.system}


def measured_level(
    stack: Stack, uri: str, token: str, photos, clients: int, jobs: int, batch: int, form: dict[str, str] | None = None
) -> dict:
    cpu_before, wal_before = cpu_seconds(stack), wal_snapshot(uri)
    level = run_level(stack.base, token, photos, clients, jobs, batch, form)
    cpu_after, wal_after = cpu_seconds(stack), wal_snapshot(uri)
    cpu = {role: cpu_after.get(role, 0) - cpu_before.get(role, 0) for role in cpu_after}
    n_jobs, n_photos = max(1, level["jobs"]), max(1, level["jobs"] * level["photos_per_job"])
    level["cpu_ms_per_job"] = {role: round(1000 * v / n_jobs, 2) for role, v in cpu.items()}
    level["cpu_ms_per_photo"] = {role: round(1000 * v / n_photos, 2) for role, v in cpu.items()}
    stack_cpu = sum(v for role, v in cpu.items() if role != "bench_clients")
    level["cpu_ms_per_photo_total"] = round(1000 * stack_cpu / n_photos, 2)
    level["wal"] = wal_per_job(wal_before, wal_after, level["jobs"])
    level["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    return level


def _median(values: list[float]) -> float:
    return round(float(np.median(values)), 2)


def summarise(levels: list[dict]) -> list[dict]:
    """Medians over the rounds of each mode."""
    out = []
    for mode in dict.fromkeys(lv["mode"] for lv in levels):
        runs = [lv for lv in levels if lv["mode"] == mode]
        roles = runs[0]["cpu_ms_per_job"].keys()
        out.append(
            {
                "mode": mode,
                "rounds": len(runs),
                "jobs_s": round(float(np.median([r["jobs_s"] for r in runs])), 2),
                "jobs_s_runs": [r["jobs_s"] for r in runs],
                "photos_s": round(float(np.median([r["photos_s"] for r in runs])), 2),
                "faces_s": _median([r["faces_s"] for r in runs]),
                "latency_p50_ms": round(float(np.median([r["latency_p50_ms"] or 0 for r in runs])), 1),
                "cpu_ms_per_job": {
                    k: round(float(np.median([r["cpu_ms_per_job"][k] for r in runs])), 2) for k in roles
                },
                "cpu_ms_per_photo_total": round(float(np.median([r["cpu_ms_per_photo_total"] for r in runs])), 2),
                "wal_bytes_per_job": int(np.median([r["wal"]["wal_bytes_per_job"] for r in runs])),
                "errors": sum(r["errors"] for r in runs),
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=400, help="single-photo jobs a level")
    parser.add_argument("--batch", type=int, default=16, help="photos a batch job (0: no batch mode)")
    parser.add_argument("--batch-jobs", type=int, default=60, help="batch jobs a level")
    parser.add_argument("--batch-clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--gallery-persons", type=int, default=20)
    parser.add_argument(
        "--faces-dir", default=os.environ.get("FACES_DATASET_DIR", str(ROOT.parent / "shared/datasets/faces"))
    )
    parser.add_argument("--real-engine", action="store_true", help="the real model instead of the null engine")
    parser.add_argument("--upload-store", default="database", choices=("database", "redis"), help="UPLOAD_STORE")
    parser.add_argument("--output", default="ceiling")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    paths = load_photos(Path(args.faces_dir), args.photos)
    photos = [(p.name, p.read_bytes()) for p in paths]
    env = {"UPLOAD_STORE": args.upload_store, **({} if args.real_engine else null_engine_env())}
    stack = Stack(2, 1, 2, env)
    out: dict = {"machine": machine_info(), "args": vars(args), "engine": "real" if args.real_engine else "null"}
    levels: list[dict] = []
    try:
        out["ready_after_s"] = round(stack.wait_ready(), 1)
        r = requests.post(
            f"{stack.base}/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}, timeout=30
        )
        r.raise_for_status()
        token = r.json()["access_token"]
        uri = database_uri(stack)
        enroll = [(p, f"p{i}") for i, p in enumerate(paths[: args.gallery_persons])]
        out["enrollment"] = enroll_gallery(stack.base, token, GALLERY, enroll)
        run_level(stack.base, token, photos, 4, 16, 0)  # warm-up
        modes = [0] + ([args.batch] if args.batch else [])
        for round_ in range(args.rounds):
            for batch in modes if round_ % 2 == 0 else modes[::-1]:
                clients, jobs = (args.batch_clients, args.batch_jobs) if batch else (args.clients, args.jobs)
                level = measured_level(stack, uri, token, photos, clients, jobs, batch)
                level["round"] = round_
                levels.append(level)
                log.info(
                    "round %d %s clients=%d: %.2f jobs/s %.2f photos/s p50 %.1f ms errors %d cpu/job %s WAL/job %s B",
                    round_, level["mode"], clients, level["jobs_s"], level["photos_s"], level["latency_p50_ms"] or -1,
                    level["errors"], level["cpu_ms_per_job"], level["wal"]["wal_bytes_per_job"],
                )  # fmt: skip
    finally:
        out["stop_returncode"] = stack.stop()
    out["levels"] = levels
    out["summary"] = summarise(levels) if levels else []
    out["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_json(RESULTS_DIR / f"{args.output}.json", out)
    for row in out["summary"]:
        log.info("%s", row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
