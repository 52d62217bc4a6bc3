"""`make test-image`'s checks (deploy/image-test/run.sh builds the images first, then runs this).

The image: non-root, no compiler, the models pass their check, the venv's contents and the size
budget, each role refusing to start without its settings. Then the production compose stack
(docker-compose.yml + deploy/compose/shared-services.yml) with secrets from make-secrets.sh: the
admin signs in, enrolls photos, recognizes a group photo by name, a signed webhook reaches a
receiver container, Flower and /metrics refuse a caller without credentials; a worker restarted
mid-batch and PostgreSQL stopped for 10 s (every job ends, exactly once); workers from a second
compose project (deploy/compose/workers.yml) process jobs; a backup with the `backup` profile is
restored into a fresh stack that recognizes the same person; nothing of the projects is left.
Photos: the ones inside the insightface package. Writes IMAGE_TEST_DIR/report.json.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import requests
from PIL import Image, ImageEnhance, ImageOps

ROOT = Path(__file__).resolve().parents[2]
WORK = Path(os.environ.get("IMAGE_TEST_DIR", "/var/tmp/faceapi-image-test"))
IMAGE = os.environ.get("FACEAPI_TEST_IMAGE", "faceapi:image-test")
BASE_IMAGE = os.environ.get("PYTHON_IMAGE", "faceapi-base:bookworm")
COMPOSE = shlex.split(os.environ.get("COMPOSE", "docker compose"))
COMPOSE_FILE = ROOT / "docker-compose.yml"
SHARED_SERVICES = ROOT / "deploy" / "compose" / "shared-services.yml"
WORKERS_FILE = ROOT / "deploy" / "compose" / "workers.yml"
RECEIVER_SCRIPT = ROOT / "deploy" / "image-test" / "standins" / "receiver" / "receiver.py"
MAIN, WORKERS, RESTORED = "faceapi-it", "faceapi-it-workers", "faceapi-it-restored"
RECEIVER = "faceapi-it-receiver"
WEB_PORT, FLOWER_PORT, RECEIVER_PORT = 18000, 15555, 18080
API = f"http://127.0.0.1:{WEB_PORT}/api/v1"
ADMIN_EMAIL = "admin@example.com"
PERSON = "Ada Example"
# The image's size budget (docs/DEPLOYMENT.md, "The image"): what the build may not exceed.
IMAGE_BUDGET_MIB = int(os.environ.get("IMAGE_BUDGET_MIB", "950"))
ROLES = ("web", "worker", "webhooks", "beat", "flower", "migrate", "backup")
# In t1.jpg (1280x886) the second face from the left sits around x 270-372, y 145-270.
ONE_FACE_OF_GROUP = (200, 60, 450, 360)


class CheckFailed(AssertionError):
    pass


@dataclass
class Report:
    checks: list[dict] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def ok(self, name: str, detail: object = "") -> None:
        elapsed = round(time.monotonic() - self.started)
        self.checks.append({"check": name, "ok": True, "detail": detail, "at_s": elapsed})
        print(f"  ok  [{elapsed:4d}s] {name}: {detail}", flush=True)

    def write(self, failure: str | None) -> None:
        WORK.mkdir(parents=True, exist_ok=True)
        summary = {"image": IMAGE, "compose": " ".join(COMPOSE), "failure": failure, "checks": self.checks}
        (WORK / "report.json").write_text(json.dumps(summary, indent=2, default=str))


report = Report()


def expect(condition: object, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def run(*words: str, check: bool = True, timeout: float = 600, **options) -> subprocess.CompletedProcess:
    completed = subprocess.run(list(words), capture_output=True, text=True, timeout=timeout, **options)
    if check and completed.returncode != 0:
        raise CheckFailed(f"{shlex.join(words)} failed ({completed.returncode}): {completed.stderr[-2000:]}")
    return completed


def compose(project: str, *words: str, files: tuple[Path, ...] = (COMPOSE_FILE, SHARED_SERVICES), **options):
    chosen = [argument for path in files for argument in ("-f", str(path))]
    return run(*COMPOSE, "-p", project, "--project-directory", str(WORK / "project"), *chosen, *words, **options)


# ---------------------------------------------------------------- photos (inside the insightface package)


def insightface_photo(name: str) -> bytes:
    import importlib.util

    spec = importlib.util.find_spec("insightface")
    expect(spec and spec.origin, "the insightface package is not installed here (make install)")
    return (Path(spec.origin).parent / "data" / "images" / name).read_bytes()


def jpeg(image: Image.Image, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def group_photo() -> bytes:
    return insightface_photo("t1.jpg")


def one_face() -> bytes:
    return jpeg(Image.open(io.BytesIO(group_photo())).crop(ONE_FACE_OF_GROUP))


def another_photo_of(data: bytes) -> bytes:
    """Mirrored, darker, re-encoded: the stand-in for a second photo of the same person."""
    image = ImageOps.mirror(Image.open(io.BytesIO(data)).convert("RGB"))
    image = ImageEnhance.Contrast(ImageEnhance.Brightness(image).enhance(0.8)).enhance(1.15)
    return jpeg(image, quality=85)


# ---------------------------------------------------------------- the image


def image_checks() -> None:
    inspected = json.loads(run("docker", "image", "inspect", IMAGE).stdout)[0]
    size_mib = inspected["Size"] / 2**20
    user = inspected["Config"]["User"]
    expect(user and user.split(":")[0] not in ("", "0", "root"), f"the image runs as {user!r}")
    report.ok("image runs as a non-root user", user)
    expect(size_mib <= IMAGE_BUDGET_MIB, f"image is {size_mib:.0f} MiB, over its budget of {IMAGE_BUDGET_MIB} MiB")
    report.ok("image size within budget", f"{size_mib:.0f} MiB <= {IMAGE_BUDGET_MIB} MiB")

    # One container for what only reads the image (with the vfs storage driver each container is
    # a full copy of it): the compilers, the venv's size by distribution.
    inside = run(
        "docker", "run", "--rm", "--entrypoint", "sh", IMAGE, "-c",
        "for c in gcc cc g++ c++ clang make ld; do command -v $c; done; echo ---;"
        " python /app/stack/image_prune.py --report",
    ).stdout  # fmt: skip
    compilers, venv = inside.split("---\n", 1)
    expect(not compilers.split(), f"compilers in the final image: {compilers.split()}")
    report.ok("no compiler in the final image", "gcc, cc, g++, c++, clang, make, ld: none")
    (WORK / "venv-sizes.txt").write_text(venv)
    report.ok("venv contents measured", venv.strip().splitlines()[-1].strip())

    models = run("docker", "run", "--rm", "--network", "none", IMAGE, "python", "-m", "stack.check_models")
    result = json.loads(models.stdout.strip().splitlines()[-1])
    expect(result["faces"] == 6, f"model check: {result}")
    report.ok("models load and find the sample photo's six faces", f"{result['model']}, {result['seconds']} s")

    worker = run("docker", "run", "--rm", "--network", "none", IMAGE, "worker", check=False, timeout=600)
    refusals = {"worker": (worker.returncode, worker.stderr + worker.stdout)}
    # The other roles through the same entrypoint in one container.
    loop = "for r in " + " ".join(ROLES[:1] + ROLES[2:]) + '; do python -m stack.serve $r; echo "=== $r $?"; done'
    others = run("docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", IMAGE, "-c", f"{loop} 2>&1")
    said = ""
    for line in others.stdout.splitlines():
        if line.startswith("=== "):
            _, role, status = line.split()
            refusals[role] = (int(status), said)
            said = ""
        else:
            said += line + "\n"
    for role in ROLES:
        status, said = refusals[role]
        said = said.strip()
        expect(status != 0, f"`docker run IMAGE {role}` with no settings started (status 0)")
        expect("Traceback" not in said, f"`{role}` without settings fails with a traceback: {said[-800:]}")
        expect(any(name in said for name in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET_KEY")), f"{role}: {said[-800:]}")
        report.ok(f"`docker run IMAGE {role}` without settings refuses clearly", said.splitlines()[-1][:160])


# ---------------------------------------------------------------- the project directory


def host_address() -> str:
    """This host's address as another host would reach it (the default route's source)."""
    route = run("ip", "-4", "route", "get", "1.1.1.1").stdout.split()
    return route[route.index("src") + 1]


def prepare_project() -> str:
    project = WORK / "project"
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    address = host_address()
    make_secrets = str(ROOT / "deploy" / "compose" / "make-secrets.sh")
    run(make_secrets, str(project / "secrets"))
    environment = dict(os.environ, DB_HOST=address, REDIS_HOST=address, MAIN_SECRETS=str(project / "secrets"))
    run(make_secrets, str(project / "secrets-workers"), env=environment)
    (project / "backups").mkdir()
    os.chown(project / "backups", 10001, 10001)
    settings = {
        "FACEAPI_IMAGE": IMAGE,
        "POSTGRES_IMAGE": os.environ.get("POSTGRES_IMAGE", "pgvector/pgvector:pg16"),
        "REDIS_IMAGE": os.environ.get("REDIS_IMAGE", "redis:7"),
        "ADMIN_EMAIL": ADMIN_EMAIL,
        "WEB_PUBLISH": f"127.0.0.1:{WEB_PORT}",
        "FLOWER_PUBLISH": str(FLOWER_PORT),
        "PRIVATE_ADDRESS": address,
        "WEBHOOK_ALLOWED_HOSTS": "receiver:8080",
        "BACKUP_KEEP": "3",
        "SECRETS_DIR": str(project / "secrets-workers"),
    }
    (project / ".env").write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    os.environ.update(settings)  # workers.yml's ${FACEAPI_IMAGE} and ${SECRETS_DIR} from the environment too
    report.ok("project prepared", f"secrets from make-secrets.sh; shared services on {address}")
    return address


def secret(name: str) -> str:
    return (WORK / "project" / "secrets" / name).read_text().strip()


# ---------------------------------------------------------------- the API


def wait_until(what: str, probe, timeout: float, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        with suppress(requests.RequestException):
            last = probe()
            if last:
                return last
        time.sleep(interval)
    raise CheckFailed(f"{what}: not within {timeout:.0f} s (last: {str(last)[:300]})")


def web_ready(timeout: float = 420) -> None:
    wait_until("web /readyz", lambda: requests.get(f"http://127.0.0.1:{WEB_PORT}/readyz", timeout=5).ok, timeout)


def sign_in() -> dict[str, str]:
    answer = requests.post(f"{API}/auth/login", json={"email": ADMIN_EMAIL, "password": secret("admin_password")})
    expect(answer.status_code == 200, f"admin login: {answer.status_code} {answer.text[:300]}")
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def submit(auth: dict, path: str, photo: bytes, wait: int = 0, **fields: str) -> dict:
    query = f"?wait={wait}" if wait else ""
    answer = requests.post(f"{API}{path}{query}", headers=auth, data=fields, files={"image": ("p.jpg", photo)})
    expect(answer.status_code in (200, 202), f"POST {path}: {answer.status_code} {answer.text[:300]}")
    return answer.json()


def job(auth: dict, job_id: str, wait: int = 30) -> dict:
    query = f"?wait={wait}" if wait else ""
    answer = requests.get(f"{API}/jobs/{job_id}{query}", headers=auth, timeout=wait + 15)
    expect(answer.status_code == 200, f"GET job: {answer.status_code} {answer.text[:300]}")
    return answer.json()


def finished(auth: dict, job_ids: list[str], timeout: float) -> dict[str, dict]:
    done: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(job_ids) and time.monotonic() < deadline:
        for job_id in job_ids:
            if job_id not in done:
                with suppress(requests.RequestException):
                    document = job(auth, job_id, wait=5)
                    if document["status"] in ("succeeded", "failed"):
                        done[job_id] = document
    expect(len(done) == len(job_ids), f"{len(job_ids) - len(done)} of {len(job_ids)} jobs did not end in {timeout} s")
    return done


def names_recognized(document: dict) -> set[str]:
    return {match["name"] for face in document["result"]["faces"] for match in face.get("matches", [])}


def received() -> list[dict]:
    return requests.get(f"http://127.0.0.1:{RECEIVER_PORT}/received", timeout=5).json()


def deliveries_of(job_ids: list[str], timeout: float = 120) -> dict[str, list[dict]]:
    def all_there():
        got = received()
        return got if {item["job_id"] for item in got} >= set(job_ids) else None

    got = wait_until("every job's webhook", all_there, timeout)
    return {job_id: [item for item in got if item["job_id"] == job_id] for job_id in job_ids}


def recognize_batch(auth: dict, count: int) -> list[str]:
    hook = "http://receiver:8080/hook"
    photo = group_photo()
    return [submit(auth, "/recognize", photo, gallery="staff", webhook_url=hook)["job_id"] for _ in range(count)]


def each_ended_once(auth: dict, job_ids: list[str], what: str, timeout: float) -> None:
    documents = finished(auth, job_ids, timeout)
    statuses = Counter(document["status"] for document in documents.values())
    expect(statuses == {"succeeded": len(job_ids)}, f"{what}: {dict(statuses)}")
    deliveries = deliveries_of(job_ids)
    for job_id, items in deliveries.items():
        ids = {item["delivery"] for item in items}
        events = [item["event"] for item in items if item["signed"]]
        expect(len(ids) == 1 and events and set(events) == {"job.succeeded"}, f"{what}: job {job_id} -> {items}")
    report.ok(what, f"{len(job_ids)} jobs succeeded, one signed job.succeeded delivery each")


# ---------------------------------------------------------------- the stacks


def start_receiver(webhook_secret: str) -> None:
    run("docker", "rm", "-f", RECEIVER, check=False)
    run(
        "docker", "run", "-d", "--name", RECEIVER, "--network", f"{MAIN}_default", "--network-alias", "receiver",
        "-p", f"127.0.0.1:{RECEIVER_PORT}:8080", "-e", f"WEBHOOK_SECRET={webhook_secret}",
        "-v", f"{RECEIVER_SCRIPT}:/srv/receiver.py:ro", BASE_IMAGE, "python3", "/srv/receiver.py",
    )  # fmt: skip
    wait_until("the receiver", lambda: isinstance(received(), list), 30, interval=0.5)


def main_stack() -> dict:
    started = time.monotonic()
    compose(MAIN, "up", "-d", timeout=900)
    web_ready()
    report.ok("production stack up (db, redis, migrate, web, worker, webhooks, beat, flower)",
              f"{time.monotonic() - started:.0f} s")  # fmt: skip

    auth = sign_in()
    report.ok("admin signs in", ADMIN_EMAIL)

    metrics = f"http://127.0.0.1:{WEB_PORT}/metrics"
    expect(requests.get(metrics).status_code == 401, "/metrics without its token is not refused")
    scraped = requests.get(metrics, headers={"Authorization": f"Bearer {secret('metrics_token')}"})
    expect(scraped.status_code == 200 and "faceapi" in scraped.text, f"/metrics with its token: {scraped.status_code}")
    flower = f"http://127.0.0.1:{FLOWER_PORT}/"
    wait_until("flower", lambda: requests.get(flower, timeout=5).status_code in (401, 200), 180)
    expect(requests.get(flower).status_code == 401, "Flower without credentials is not refused")
    user, _, password = secret("flower_basic_auth").partition(":")
    expect(requests.get(flower, auth=(user, password)).status_code == 200, "Flower refuses its own credentials")
    report.ok("/metrics and Flower refuse callers without credentials, accept theirs", "401 / 200 each")

    webhook_secret = requests.get(f"{API}/webhooks/secret", headers=auth).json()["secret"]
    start_receiver(webhook_secret)

    enrolled = submit(auth, "/persons", one_face(), wait=30, name=PERSON, consent="true", gallery="staff")
    enrolled = enrolled if enrolled.get("status") == "succeeded" else job(auth, enrolled["job_id"])
    expect(enrolled["status"] == "succeeded", f"enrollment: {enrolled}")
    person = enrolled["person_id"]
    added = submit(auth, f"/persons/{person}/faces", another_photo_of(one_face()), wait=30)
    added = added if added.get("status") in ("succeeded", "failed") else job(auth, added["job_id"])
    expect(added["status"] == "succeeded", f"second photo: {added}")
    report.ok("enrolls a person from two photos", f"{PERSON}: {person}")

    hook = "http://receiver:8080/hook"
    recognized = submit(auth, "/recognize", group_photo(), gallery="staff", webhook_url=hook)
    document = job(auth, recognized["job_id"])
    expect(document["status"] == "succeeded", f"recognition: {document}")
    faces = len(document["result"]["faces"])
    expect(PERSON in names_recognized(document), f"{PERSON} not recognized: {document['result']}")
    report.ok("recognizes the group photo by name", f"{faces} faces, {PERSON} among them")
    delivery = deliveries_of([recognized["job_id"]])[recognized["job_id"]]
    expect(delivery and all(item["signed"] and item["fresh"] for item in delivery), f"webhook: {delivery}")
    report.ok("signed webhook reached the receiver container", f"{delivery[0]['event']}, signature verified")
    return auth


def worker_restart(auth: dict) -> None:
    job_ids = recognize_batch(auth, 10)
    wait_until("the batch's first job", lambda: job(auth, job_ids[0], wait=5)["status"] != "queued", 120, 0.5)
    before = Counter(job(auth, job_id, wait=0)["status"] for job_id in job_ids)
    compose(MAIN, "restart", "-t", "3", "worker")
    report.ok("worker container restarted mid-batch", f"SIGTERM, SIGKILL after 3 s; jobs then: {dict(before)}")
    each_ended_once(auth, job_ids, "after the worker restart every job ended exactly once", 420)


def postgres_outage(auth: dict) -> None:
    job_ids = recognize_batch(auth, 16)
    before = Counter(job(auth, job_id, wait=0)["status"] for job_id in job_ids)
    compose(MAIN, "stop", "db")
    time.sleep(10)
    compose(MAIN, "start", "db")
    report.ok("PostgreSQL stopped for 10 s mid-batch", f"stop db; 10 s; start db; jobs then: {dict(before)}")
    each_ended_once(auth, job_ids, "after the PostgreSQL outage every job ended exactly once", 420)


def remote_workers(auth: dict) -> None:
    compose(MAIN, "stop", "worker")
    try:
        compose(WORKERS, "up", "-d", files=(WORKERS_FILE,), timeout=600)
        job_ids = recognize_batch(auth, 3)
        each_ended_once(auth, job_ids, "a second compose project's workers (workers.yml) processed jobs", 600)
    finally:
        compose(WORKERS, "down", "-v", "--remove-orphans", files=(WORKERS_FILE,), check=False)
        compose(MAIN, "start", "worker")


def backup_and_restore() -> None:
    compose(MAIN, "--profile", "backup", "run", "--rm", "backup", timeout=300)
    dumps = sorted((WORK / "project" / "backups").glob("faceapi-*.dump"))
    expect(dumps and Path(str(dumps[-1]) + ".json").exists(), "the backup profile wrote no dump with its manifest")
    report.ok("backup profile wrote a dump", f"{dumps[-1].name}, {dumps[-1].stat().st_size} bytes")
    run("docker", "rm", "-f", RECEIVER, check=False)  # first: its endpoint would keep the network
    compose(MAIN, "down", "-v", "--remove-orphans", timeout=300)

    compose(RESTORED, "up", "-d", "db", "redis", timeout=300)
    wait_until("the fresh db", lambda: "healthy" in run("docker", "inspect", "-f", "{{.State.Health.Status}}",
                                                        f"{RESTORED}_db_1", check=False).stdout, 180)  # fmt: skip
    restore = f"python -m stack.backup restore /backups/{dumps[-1].name}"
    compose(RESTORED, "run", "--rm", "--no-deps", "-v", f"{WORK / 'project' / 'backups'}:/backups", "web",
            *restore.split(), timeout=300)  # fmt: skip
    compose(RESTORED, "up", "-d", timeout=900)
    web_ready()
    auth = sign_in()
    document = job(auth, submit(auth, "/recognize", group_photo(), gallery="staff")["job_id"])
    expect(document["status"] == "succeeded" and PERSON in names_recognized(document), f"restored: {document}")
    report.ok("restored into a fresh stack, which recognizes the same person", PERSON)


def leftovers() -> list[str]:
    found = []
    for project in (MAIN, WORKERS, RESTORED):
        label = f"label=com.docker.compose.project={project}"
        for kind in (("ps", "-a"), ("network", "ls"), ("volume", "ls")):
            found += [f"{kind[0]} {name}" for name in run("docker", *kind, "-q", "--filter", label).stdout.split()]
    found += [f"container {RECEIVER}"] * bool(run("docker", "ps", "-aq", "--filter", f"name={RECEIVER}").stdout.strip())
    return found


def shut_down() -> None:
    """Every project down with its volumes; the receiver first (its endpoint would keep the
    main project's network, and compose v1 stops at that error before the volumes)."""
    run("docker", "rm", "-f", RECEIVER, check=False)
    for project, files in ((WORKERS, (WORKERS_FILE,)), (MAIN, None), (RESTORED, None)):
        chosen = {"files": files} if files else {}
        down = compose(project, "down", "-v", "--remove-orphans", check=False, timeout=300, **chosen)
        if down.returncode != 0:
            print(f"{project} down: {down.stderr[-500:]}", file=sys.stderr)


def main() -> int:
    failure = None
    try:
        image_checks()
        prepare_project()
        shut_down()  # what an interrupted run may have left
        auth = main_stack()
        worker_restart(auth)
        postgres_outage(auth)
        remote_workers(auth)
        backup_and_restore()
    except Exception as error:  # any failure: reported, the stacks' logs kept, then everything shut down
        failure = f"{type(error).__name__}: {error}"
        print(f"FAILED: {failure}", file=sys.stderr)
        if os.environ.get("KEEP_STACK") == "1":
            print("KEEP_STACK=1: the stacks are left running", file=sys.stderr)
            report.write(failure)
            return 1
        for project in (MAIN, RESTORED):
            logs = compose(project, "logs", "--no-color", "--tail", "60", check=False).stdout
            (WORK / f"{project}.log").write_text(logs)
    finally:
        if os.environ.get("KEEP_STACK") != "1" or failure is None:
            shut_down()
    left = leftovers()
    if not left:
        report.ok("shut down: no container, network or volume of the projects left", "")
    elif failure is None:
        failure = f"left behind: {left}"
    report.write(failure)
    print(f"report: {WORK / 'report.json'}; {'FAILED: ' + failure if failure else 'all checks passed'}")
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(main())
