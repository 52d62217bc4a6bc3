"""Where a queued upload could wait: PostgreSQL bytea (today), Redis with a TTL, a file under DATA_DIR.

    python -m bench.uploads [--uploads 200] [--rounds 3] [--faces-dir DIR]

Each store does what a job does with its photo: the web writes it, a worker reads it, the end of
the job erases it. PostgreSQL: INSERT of a row with the bytea (as `jobs`), the worker's
`UPDATE ... RETURNING` of it, then the UPDATE that sets it NULL; Redis: SET with EX, GET, DEL
(the embedded server's settings, appendonly as the stack runs it); file: write + fsync + rename
(what a crash-safe write takes), read, unlink. Also 16 photos of one job as a bytea[] against one
joined bytea (`several_photos`). Photos: the real set's (mean ~190 kB). The stores
alternate round by round; per store: CPU ms an upload of this process (the client: psycopg,
redis-py, the file calls) and of the server (postgres or redis-server processes, psutil), wall ms,
and WAL bytes an upload (pg_current_wal_lsn). Results: bench/results/uploads.json.

No S3-compatible store is measured: none is installable here from the project's package sources
in the time available (minio is a separate binary; moto's server is a test double whose costs say
nothing of S3's). Its cost is an HTTPS round trip each way (PERFORMANCE.md, section 12).
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psutil

from bench.common import RESULTS_DIR, machine_info, write_json

log = logging.getLogger("bench.uploads")
ROOT = Path(__file__).resolve().parent.parent


def _cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _own_cpu() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


class PostgresStore:
    name = "postgres_bytea"

    def __init__(self, uri: str) -> None:
        import psycopg

        self.conn = psycopg.connect(uri, autocommit=True)
        self.conn.execute("DROP TABLE IF EXISTS bench_uploads")
        self.conn.execute("CREATE TABLE bench_uploads (id uuid PRIMARY KEY, status text, input_image bytea)")
        self.uri = uri

    def server_procs(self) -> list[psutil.Process]:
        pids = [r[0] for r in self.conn.execute("SELECT pid FROM pg_stat_activity").fetchall() if r[0]]
        postmaster = psutil.Process(pids[0]).parent() if pids else None
        return [postmaster, *postmaster.children()] if postmaster else []

    def wal(self) -> int:
        return int(self.conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')").fetchone()[0])

    def cycle(self, data: bytes) -> None:
        key = uuid.uuid4()
        self.conn.execute("INSERT INTO bench_uploads VALUES (%s, 'queued', %s)", (key, data))
        got = self.conn.execute(
            "UPDATE bench_uploads SET status = 'running' WHERE id = %s RETURNING input_image", (key,)
        ).fetchone()[0]
        assert len(got) == len(data)
        self.conn.execute("UPDATE bench_uploads SET status = 'succeeded', input_image = NULL WHERE id = %s", (key,))


class RedisStore:
    name = "redis_ttl"

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self.pid = int(self.client.info("server")["process_id"])

    def server_procs(self) -> list[psutil.Process]:
        return [psutil.Process(self.pid)]

    def cycle(self, data: bytes) -> None:
        key = f"upload:{uuid.uuid4()}"
        self.client.set(key, data, ex=3600)
        assert len(self.client.get(key)) == len(data)
        self.client.delete(key)


class FileStore:
    name = "file_data_dir"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def server_procs(self) -> list[psutil.Process]:
        return []

    def cycle(self, data: bytes) -> None:
        name = self.directory / str(uuid.uuid4())
        partial = name.with_suffix(".part")
        with partial.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        partial.rename(name)
        assert len(name.read_bytes()) == len(data)
        name.unlink()


def several_as_array_or_joined(uri: str, photos: list[bytes], jobs: int, rounds: int) -> list[dict]:
    """A job's several photos through PostgreSQL as a bytea[] or as one joined bytea: INSERT, the
    claim's UPDATE ... RETURNING, the UPDATE that drops them; CPU of server and client a job."""
    import psycopg

    conn = psycopg.connect(uri, autocommit=True)
    conn.execute("DROP TABLE IF EXISTS bench_several")
    conn.execute("CREATE TABLE bench_several (id uuid PRIMARY KEY, photos bytea[], joined bytea)")
    backend = psutil.Process(conn.execute("SELECT pg_backend_pid()").fetchone()[0])
    postmaster = backend.parent()
    procs = [postmaster, *postmaster.children()]
    statements = {
        "array": ("photos", lambda: photos, lambda got: len(got) == len(photos)),
        "joined": ("joined", lambda: b"".join(photos), lambda got: len(got) == sum(map(len, photos))),
    }
    runs = []
    for round_ in range(rounds):
        for kind, (column, value, check) in statements.items():
            server0, own0 = _cpu(procs), _own_cpu()
            for _ in range(jobs):
                key = uuid.uuid4()
                conn.execute(f"INSERT INTO bench_several (id, {column}) VALUES (%s, %s)", (key, value()))  # noqa: S608
                got = conn.execute(
                    f"UPDATE bench_several SET id = id WHERE id = %s RETURNING {column}",  # noqa: S608
                    (key,),
                ).fetchone()[0]
                assert check(got)
                conn.execute(f"UPDATE bench_several SET {column} = NULL WHERE id = %s", (key,))  # noqa: S608
            runs.append(
                {
                    "round": round_,
                    "kind": kind,
                    "photos_a_job": len(photos),
                    "server_cpu_ms_per_job": round(1000 * (_cpu(procs) - server0) / jobs, 1),
                    "client_cpu_ms_per_job": round(1000 * (_own_cpu() - own0) / jobs, 1),
                }
            )
            log.info("%s", runs[-1])
    conn.close()
    return runs


def photos_of(faces_dir: Path, limit: int) -> list[bytes]:
    with (faces_dir / "labels.tsv").open() as handle:
        rows = [r for r in csv.DictReader(handle, delimiter="\t") if r["kind"] in ("single", "group")]
    return [(faces_dir / r["path"]).read_bytes() for r in rows[:limit]]


def measure(store, photos: list[bytes], uploads: int, pg: PostgresStore) -> dict:
    procs = store.server_procs()
    wal0, own0, server0, t0 = pg.wal(), _own_cpu(), _cpu(procs), time.perf_counter()
    for i in range(uploads):
        store.cycle(photos[i % len(photos)])
    wall, own, server, wal = time.perf_counter() - t0, _own_cpu() - own0, _cpu(procs) - server0, pg.wal() - wal0
    return {
        "store": store.name,
        "uploads": uploads,
        "wall_ms_per_upload": round(1000 * wall / uploads, 3),
        "client_cpu_ms_per_upload": round(1000 * own / uploads, 3),
        "server_cpu_ms_per_upload": round(1000 * server / uploads, 3),
        "wal_bytes_per_upload": round(wal / uploads),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--faces-dir", default=os.environ.get("FACES_DATASET_DIR", str(ROOT.parent / "shared/datasets/faces"))
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from bench.service import free_port
    from stack.embedded import start_postgres, start_redis, stop_postgres

    photos = photos_of(Path(args.faces_dir), 100)
    data_dir = Path(tempfile.mkdtemp(prefix="facebench-uploads-"))
    pg_server, uri = start_postgres(data_dir)
    redis_proc, redis_url = start_redis(data_dir, free_port())
    out: dict = {"machine": machine_info(), "photo_bytes_mean": round(float(np.mean([len(p) for p in photos])))}
    try:
        pg = PostgresStore(uri)
        stores = [pg, RedisStore(redis_url), FileStore(data_dir / "uploads")]
        for store in stores:  # warm-up
            measure(store, photos, 10, pg)
        runs = []
        for round_ in range(args.rounds):
            for store in stores if round_ % 2 == 0 else stores[::-1]:
                runs.append({"round": round_, **measure(store, photos, args.uploads, pg)})
                log.info("%s", runs[-1])
        out["runs"] = runs
        out["several_photos"] = several_as_array_or_joined(uri, photos[:16], 20, args.rounds)
        out["summary"] = [
            {
                "store": store.name,
                **{
                    key: round(float(np.median([r[key] for r in runs if r["store"] == store.name])), 3)
                    for key in ("wall_ms_per_upload", "client_cpu_ms_per_upload", "server_cpu_ms_per_upload",
                                "wal_bytes_per_upload")
                },
            }
            for store in stores
        ]  # fmt: skip
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
        if pg_server is not None:
            stop_postgres(pg_server)
    out["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_json(RESULTS_DIR / "uploads.json", out)
    for row in out["summary"]:
        log.info("%s", row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
