"""The service across four hosts, on one machine (Linux network namespaces joined by veth pairs).

    db  10.x.y.1   PostgreSQL (password, TCP) and Redis (requirepass)
    web 10.x.y.2   migrate (one-shot), gunicorn, beat
    w1  10.x.y.3   a Celery worker
    w2  10.x.y.4   a Celery worker

Each host has only its own address; the processes are the image's roles (`python -m stack.serve
ROLE`) with the settings a deployment gives them, secrets as files (*_FILE). The test, as a client
on the network (.254), runs a batch enrollment and recognitions through the web host, pulls w1's
cable mid-batch, and checks that every job ends exactly once and nothing is lost: every job ends;
none ends twice (its status and finished_at never change once ended, each webhook is sent once,
each person holds each of its photos once); the surviving worker finishes w1's jobs (the reaper
re-queues the job w1 was running once JOB_RUNNING_DEADLINE passes); recognitions find the
enrolled persons. Then w1's cable goes back in: its late writes change nothing, and it takes
jobs again.

Skipped with the reason where the machine does not allow it (not root, no `ip`, no namespaces).
`make test-multihost` runs it alone.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest
import requests
from PIL import Image

from tests import images, netns
from tests.conftest import ROOT

PASSWORDS = {name: uuid.uuid4().hex for name in ("postgres", "redis", "admin")}
ADMIN = "admin@example.com"
# Where the six faces of t1.jpg are (x1, y1, x2, y2); each person is a crop around one of them.
FACES = [(55, 260, 168, 397), (270, 144, 371, 270), (463, 266, 572, 415), (745, 342, 847, 480)]
FACES += [(906, 59, 1011, 206), (1130, 272, 1227, 400)]
JOB_RUNNING_DEADLINE = 25  # seconds: the reaper re-queues a job its worker took no further than this
# PostgreSQL ends a transaction left idle this long: a cut-off worker's session is gone before its
# job is given to another worker (keep it below JOB_RUNNING_DEADLINE, as docker-compose.yml does).
IDLE_IN_TRANSACTION = 10


# ---------------------------------------------------------------- photos


def person_photos(index: int) -> list[bytes]:
    """Three photos of the index-th person of t1.jpg: a crop around the face, and two altered copies
    different enough not to count as the same face again (ENROLL_SAME_FACE_SIMILARITY)."""
    x1, y1, x2, y2 = FACES[index]
    w, h = x2 - x1, y2 - y1
    group = Image.open(io.BytesIO(images.group_photo())).convert("RGB")
    box = (max(0, x1 - w // 2), max(0, y1 - h // 2), min(group.width, x2 + w // 2), min(group.height, y2 + h // 2))
    first = images.encode(group.crop(box), quality=95)
    return [first, images.another_photo(first), images.tilted_photo(first)]


def batch_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index in range(len(FACES)):
            for number, photo in enumerate(person_photos(index), 1):
                archive.writestr(f"Person {index + 1}/{number}.jpg", photo)
    return buffer.getvalue()


# ---------------------------------------------------------------- the webhook receiver


class Receiver:
    """Webhooks as the workers send them, on the machine's own address."""

    def __init__(self, address: str) -> None:
        self.deliveries: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.deliveries.append(
                    {
                        "id": body["id"],
                        "event": self.headers["X-FaceAPI-Event"],
                        "delivery": self.headers["X-FaceAPI-Delivery"],
                    }
                )
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_):
                pass

        self.server = ThreadingHTTPServer((address, 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://{address}:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


# ---------------------------------------------------------------- the hosts


class Deployment:
    """The four hosts and their processes, started as a deployment would start them."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.network = netns.Network(["db", "web", "w1", "w2"]).open()
        self.hosts = self.network.hosts
        db = self.hosts["db"].address
        self.database_url = f"postgresql://faceapi:{PASSWORDS['postgres']}@{db}:5432/faceapi"
        self.redis_url = f"redis://:{PASSWORDS['redis']}@{db}:6379/0"
        self.base = f"http://{self.hosts['web'].address}:8000"
        self.receiver = Receiver(self.network.gateway)
        self.secrets = work / "secrets"
        self.secrets.mkdir()
        for name, value in {
            "database_url": self.database_url,
            "redis_url": self.redis_url,
            "jwt_secret_key": uuid.uuid4().hex + uuid.uuid4().hex,
            "admin_password": PASSWORDS["admin"],
        }.items():
            (self.secrets / name).write_text(value + "\n")

    def log(self, name: str) -> Path:
        return self.work / f"{name}.log"

    def tail(self, name: str, characters: int = 3000) -> str:
        path = self.log(name)
        return f"--- {name}.log\n" + (path.read_text(errors="replace")[-characters:] if path.exists() else "(none)")

    def env(self, host: str, **extra: str) -> dict[str, str]:
        """A deployment's environment: settings, secrets as files; nothing of the tests' own."""
        inherited = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL") or k.startswith("COV")}
        data_dir = self.work / f"data-{host}"
        data_dir.mkdir(exist_ok=True)
        return inherited | {
            "HOME": str(self.work),
            "PYTHONPATH": str(ROOT),
            "FACEAPI_ENV": "production",
            "DATA_DIR": str(data_dir),
            "DATABASE_URL_FILE": str(self.secrets / "database_url"),
            "REDIS_URL_FILE": str(self.secrets / "redis_url"),
            "JWT_SECRET_KEY_FILE": str(self.secrets / "jwt_secret_key"),
            "HOST": self.hosts[host].address,
            "PORT": "8000",
            "WEB_WORKERS": "1",
            "WORKER_CONCURRENCY": "1",
            "ORT_THREADS": "1",
            "BCRYPT_ROUNDS": "4",
            "RATELIMIT_SUBMIT": "10000/minute",
            "RATELIMIT_BATCH": "1000/minute",
            "RATELIMIT_LOGIN": "1000/minute",
            # The receiver on the machine's address (a private one); by host, and host:port.
            "WEBHOOK_ALLOWED_HOSTS": f"{self.network.gateway},{self.network.gateway}:{self.receiver.port}",
            "WEBHOOK_RETRY_BASE_SECONDS": "1",
            "REAPER_INTERVAL": "2",
            "JOB_RUNNING_DEADLINE": str(JOB_RUNNING_DEADLINE),
            "JOB_REQUEUE_AFTER": "60",
            "GALLERY_INDEX_MIN_FACES": "0",
            # The photos are altered copies of one crop each, some as alike as a re-encoded photo:
            # this test is about delivery, not about telling the same face again (enrollment tests are).
            "ENROLL_SAME_FACE_SIMILARITY": "1",
            **extra,
        }

    def serve(self, host: str, role: str, *extra: str, **env: str):
        return self.hosts[host].start(
            [sys.executable, "-m", "stack.serve", role, *extra], self.env(host, **env), self.log(f"{host}-{role}")
        )

    # -- db host

    def start_database(self) -> None:
        """PostgreSQL (pgserver's binaries) listening on the db host's address with a password, and
        Redis with requirepass. pgserver initialises the data directory on the machine, then the
        server runs in the db host as its own user."""
        import pgserver

        from stack.embedded import redis_server_binary, stop_postgres

        pgdata = self.work / "pg"
        server = pgserver.get_server(pgdata, cleanup_mode=None)
        server.psql(f"CREATE ROLE faceapi LOGIN PASSWORD '{PASSWORDS['postgres']}';")
        server.psql("CREATE DATABASE faceapi OWNER faceapi;")
        server.psql("\\c faceapi\nCREATE EXTENSION IF NOT EXISTS vector;")
        stop_postgres(server)
        with (pgdata / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {self.network.subnet} scram-sha-256\n")
        user = server.system_user
        drop = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"] if user else []
        postgres = Path(pgserver.__file__).parent / "pginstall" / "bin" / "postgres"
        settings = {
            "listen_addresses": self.hosts["db"].address,
            "port": "5432",
            "unix_socket_directories": str(pgdata),
            "idle_in_transaction_session_timeout": f"{IDLE_IN_TRANSACTION}s",
            "tcp_keepalives_idle": "5",
            "tcp_keepalives_interval": "2",
            "tcp_keepalives_count": "3",
        }
        options = [word for key, value in settings.items() for word in ("-c", f"{key}={value}")]
        self.hosts["db"].start(
            [*drop, str(postgres), "-D", str(pgdata), *options], {"PATH": "/usr/bin:/bin"}, self.log("db-postgres")
        )

        redis_dir = self.work / "redis"
        redis_dir.mkdir()
        config = redis_dir / "redis.conf"
        config.write_text(
            f'bind {self.hosts["db"].address}\nport 6379\nrequirepass "{PASSWORDS["redis"]}"\n'
            f'dir {redis_dir}\nappendonly yes\nappendfsync everysec\nsave ""\ntcp-keepalive 10\n'
        )
        config.chmod(0o600)
        self.hosts["db"].start([redis_server_binary(), str(config)], {"PATH": "/usr/bin:/bin"}, self.log("db-redis"))

    def wait_for_database(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.database_url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                assert time.monotonic() < deadline, self.tail("db-postgres")
                time.sleep(0.5)

    # -- web and worker hosts

    def start_services(self) -> None:
        migrated = self.hosts["web"].run(
            [sys.executable, "-m", "stack.serve", "migrate"],
            self.env("web", ADMIN_EMAIL=ADMIN, ADMIN_PASSWORD_FILE=str(self.secrets / "admin_password")),
            timeout=300,
        )
        assert migrated.returncode == 0, migrated.stdout[-2000:] + migrated.stderr[-3000:]
        self.serve("web", "web")
        self.serve("web", "beat")
        for host in ("w1", "w2"):
            self.serve(host, "worker", "--hostname", f"{host}@%h", "--queues", "faceapi,webhooks")

    def wait_until_ready(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        pending = {"web", "w1", "w2"}
        while pending:
            assert time.monotonic() < deadline, "\n".join(self.tail(n) for n in ("web-web", "w1-worker", "w2-worker"))
            if "web" in pending:
                try:
                    if requests.get(f"{self.base}/readyz", timeout=3).status_code == 200:
                        pending.discard("web")
                except requests.RequestException:
                    pass
            for host in ("w1", "w2"):
                if (
                    host in pending
                    and self.log(f"{host}-worker").exists()
                    and " ready." in self.log(f"{host}-worker").read_text(errors="replace")
                ):
                    pending.discard(host)
            time.sleep(0.5)

    def close(self) -> None:
        self.receiver.close()
        self.network.close()


@pytest.fixture()
def deployment():
    reason = netns.unavailable()
    if reason:
        pytest.skip(f"the multi-host test {reason}")
    work = Path(tempfile.mkdtemp(prefix="faceapi-multihost-"))
    os.chmod(work, 0o755)  # PostgreSQL's user traverses it
    deployment = Deployment(work)
    try:
        deployment.start_database()
        deployment.wait_for_database()
        deployment.start_services()
        deployment.wait_until_ready()
        yield deployment
    finally:
        deployment.close()
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------- the client's side


def ended_jobs(database_url: str) -> dict[str, tuple]:
    """Every job that has ended: id -> (status, finished_at, error code, result digest)."""
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT id, status, finished_at, error->>'code', md5(coalesce(result::text, '')) FROM jobs "
            "WHERE status IN ('succeeded', 'failed')"
        ).fetchall()
    return {str(row[0]): tuple(row[1:]) for row in rows}


def all_jobs(database_url: str) -> dict[str, str]:
    with psycopg.connect(database_url) as connection:
        return {str(i): s for i, s in connection.execute("SELECT id, status FROM jobs").fetchall()}


def in_a_job(database_url: str, address: str, since: float = 0) -> bool:
    """Whether the worker at `address` is computing a job it claimed (not claiming one, not writing
    a result), for `since` seconds at least: its last statement was the claim (an autocommitted
    `UPDATE jobs ... RETURNING ... input_image`, workers/pipeline.py) and it has said nothing since,
    or the gallery's model was read after it (`SELECT galleries.model`, workers/portability.engine_for)
    in the transaction that goes on to search or store, or, for an enrollment, the duplicate-photo
    check (`SELECT faces.`) in the transaction that will store the face."""
    with psycopg.connect(database_url) as connection:
        return bool(
            connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE client_addr = %s "
                "AND state_change < now() - make_interval(secs => %s) AND ("
                " (state = 'idle' AND query LIKE 'UPDATE jobs SET%%' AND query LIKE '%%RETURNING%%input_image%%')"
                " OR (state = 'idle in transaction' AND query LIKE 'SELECT galleries.model %%')"
                " OR (state = 'idle in transaction' AND query LIKE 'SELECT faces.%%'"
                "     AND query NOT LIKE '%%FOR UPDATE%%'))",
                (address, since),
            ).fetchone()[0]
        )


def watch_endings(database_url: str, stop: threading.Event, seen: dict[str, tuple], changes: list) -> None:
    """Record each job's ending the first time it is seen, and any later change to it."""
    while not stop.is_set():
        try:
            for job_id, ending in ended_jobs(database_url).items():
                first = seen.setdefault(job_id, ending)
                if first != ending:
                    changes.append((job_id, first, ending))
                    seen[job_id] = ending
        except psycopg.OperationalError:
            pass
        stop.wait(0.5)


def test_jobs_survive_a_worker_host_cut_off_mid_batch(deployment):
    base, headers = deployment.base, {}
    login = requests.post(
        f"{base}/api/v1/auth/login", json={"email": ADMIN, "password": PASSWORDS["admin"]}, timeout=30
    )
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    receiver = deployment.receiver
    stop, seen, changes = threading.Event(), {}, []
    watcher = threading.Thread(target=watch_endings, args=(deployment.database_url, stop, seen, changes), daemon=True)
    watcher.start()
    try:
        # A batch of 18 photos (6 persons x 3), and 6 recognitions behind it in the queue.
        archive = batch_archive()
        submitted = requests.post(
            f"{base}/api/v1/enrollments",
            headers={**headers, "Idempotency-Key": "multihost-batch"},
            data={"consent": "true", "gallery": "staff", "webhook_url": receiver.url},
            files={"archive": ("staff.zip", archive, "application/zip")},
            timeout=60,
        )
        assert submitted.status_code == 202, submitted.text
        batch_id = submitted.json()["batch_id"]
        during = []
        for _ in range(len(FACES)):
            response = requests.post(
                f"{base}/api/v1/recognize",
                headers=headers,
                data={"gallery": "staff", "webhook_url": receiver.url},
                files={"image": ("group.jpg", images.group_photo(), "image/jpeg")},
                timeout=60,
            )
            assert response.status_code == 202, response.text
            during.append(response.json()["job_id"])

        # Mid-batch, while w1 is inside a job (claimed, computing in its open transaction), pull
        # its cable. Should w1 finish that job in the instant before, put the cable back and retry.
        deadline = time.monotonic() + 180
        while len(seen) < 3:
            assert time.monotonic() < deadline, deployment.tail("w1-worker") + deployment.tail("w2-worker")
            time.sleep(0.2)
        w1 = deployment.hosts["w1"].address
        for _attempt in range(5):
            while not in_a_job(deployment.database_url, w1):
                assert time.monotonic() < deadline, deployment.tail("w1-worker")
                time.sleep(0.02)
            deployment.network.cut("w1")
            cut_at = time.monotonic()
            running_at_cut = {job for job, status in all_jobs(deployment.database_url).items() if status == "running"}
            time.sleep(0.5)
            if in_a_job(deployment.database_url, w1, since=0.4):
                break  # stuck inside its job: its commit cannot arrive
            deployment.network.reconnect("w1")
        else:
            pytest.fail("w1 was never caught inside a job")

        # Every job ends, through w2 alone (and the reaper for what w1 held).
        expected = set(all_jobs(deployment.database_url))
        assert len(expected) == 18 + len(FACES)
        deadline = time.monotonic() + 300
        while set(seen) != expected:
            assert time.monotonic() < deadline, (
                f"not ended: {sorted(expected - set(seen))}\n"
                + deployment.tail("w2-worker")
                + deployment.tail("web-beat")
            )
            time.sleep(0.5)
        batch = requests.get(f"{base}/api/v1/enrollments/{batch_id}", headers=headers, timeout=30).json()
        assert (batch["status"], batch["succeeded"], batch["failed"]) == ("succeeded", 18, 0), batch
        persons = {item["person_id"] for item in batch["items"]}
        assert len(persons) == len(FACES)
        with psycopg.connect(deployment.database_url) as connection:
            requeued = {
                str(row[0]) for row in connection.execute("SELECT id FROM jobs WHERE requeued_after_timeout").fetchall()
            }
            faces = dict(
                connection.execute("SELECT person_id::text, count(*) FROM faces GROUP BY person_id").fetchall()
            )
        # The job w1 was inside: re-queued once by the reaper after JOB_RUNNING_DEADLINE, ended by w2.
        assert len(requeued) == 1 and requeued <= running_at_cut, (requeued, running_at_cut)
        assert faces == dict.fromkeys(persons, 3), faces  # each photo stored once
        cut_seconds = time.monotonic() - cut_at

        # Recognitions while w1 is still cut off: each person is found.
        for index in range(len(FACES)):
            photo = images.another_photo(person_photos(index)[0], scale=0.9)
            response = requests.post(
                f"{base}/api/v1/recognize?wait=30",
                headers=headers,
                data={"gallery": "staff"},
                files={"image": ("p.jpg", photo, "image/jpeg")},
                timeout=90,
            )
            assert response.status_code in (200, 202), response.text
            job = response.json()
            if response.status_code == 202:
                job = requests.get(f"{base}/api/v1/jobs/{job['job_id']}?wait=30", headers=headers, timeout=60).json()
            assert job["status"] == "succeeded", job
            best = max(job["result"]["faces"], key=lambda face: face["bbox"][2] - face["bbox"][0])
            names = [match["name"] for match in best["matches"]]
            assert names[:1] == [f"Person {index + 1}"], job["result"]

        # w1's cable goes back in: its late writes change nothing, and it takes jobs again.
        snapshot = dict(seen)
        w1_log = deployment.log("w1-worker")
        before_reconnect = len(w1_log.read_bytes())
        deployment.network.reconnect("w1")
        deadline = time.monotonic() + 120
        from celery import Celery

        probe = Celery(broker=deployment.redis_url)
        while not probe.control.ping(destination=[f"w1@{os.uname().nodename}"], timeout=2):
            assert time.monotonic() < deadline, deployment.tail("w1-worker")
            time.sleep(1)
        extra = []
        for _ in range(8):
            response = requests.post(
                f"{base}/api/v1/recognize",
                headers=headers,
                data={"gallery": "staff", "webhook_url": receiver.url},
                files={"image": ("group.jpg", images.group_photo(), "image/jpeg")},
                timeout=60,
            )
            extra.append(response.json()["job_id"])
        deadline = time.monotonic() + 120
        while not set(extra) <= set(seen):
            assert time.monotonic() < deadline, deployment.tail("w1-worker") + deployment.tail("w2-worker")
            time.sleep(0.5)
        after = w1_log.read_bytes()[before_reconnect:].decode(errors="replace")
        assert "Task recognize[" in after and "succeeded in" in after, deployment.tail("w1-worker")
        time.sleep(IDLE_IN_TRANSACTION + 5)  # anything w1 still had to say has arrived
        stop.set()
        watcher.join(5)
        assert not changes, f"jobs ended twice: {changes}"
        assert {job_id: seen[job_id] for job_id in snapshot} == snapshot

        # Each job's webhook once (a job that ended twice would send two deliveries), the batch's once.
        deadline = time.monotonic() + 60
        wanted = set(during) | set(extra)
        while {d["id"] for d in receiver.deliveries} < wanted | {batch_id}:
            assert time.monotonic() < deadline, receiver.deliveries
            time.sleep(0.5)
        per_object: dict[str, set[str]] = {}
        for delivery in receiver.deliveries:
            per_object.setdefault(delivery["id"], set()).add(delivery["delivery"])
        assert all(len(ids) == 1 for ids in per_object.values()), per_object
        assert set(per_object) == wanted | {batch_id}
        w1_text = w1_log.read_text(errors="replace")
        print(
            json.dumps(
                {
                    "cut_to_all_ended_s": round(cut_seconds, 1),
                    "running_at_cut": len(running_at_cut),
                    "requeued_by_reaper": len(requeued),
                    "w1_tasks_after_reconnect": after.count("received"),
                    "w1_superseded_runs": w1_text.count("ends nothing"),
                    "digest": hashlib.sha256(archive).hexdigest()[:12],
                }
            )
        )
    finally:
        stop.set()
