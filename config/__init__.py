"""Every setting of the service, read from the environment in one place.

Defaults are safe for a developer machine: embedded PostgreSQL and Redis under
``DATA_DIR``, services bound to loopback, signup off, CORS closed.
Production sets ``FACEAPI_ENV=production``, ``DATABASE_URL``, ``REDIS_URL`` and
``JWT_SECRET_KEY`` (the web app refuses to start without a strong secret there).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ROOT_DIR = Path(__file__).resolve().parent.parent

# Secrets nobody may run production with (examples from docs and compose files).
WELL_KNOWN_SECRETS = frozenset({"", "secret", "changeme", "change-me", "dev", "development", "test"})


def _env(name: str, default: str | None = None) -> str | None:
    """NAME, or when it is unset the content of the file NAME_FILE names (Docker and Kubernetes
    secrets are files: DATABASE_URL_FILE=/run/secrets/database_url), less its final newline."""
    value = os.environ.get(name)
    if value in (None, "") and os.environ.get(f"{name}_FILE"):
        try:
            value = Path(os.environ[f"{name}_FILE"]).read_text().rstrip("\r\n")
        except OSError as error:
            raise RuntimeError(f"{name}_FILE: cannot read {os.environ[f'{name}_FILE']}: {error.strerror}") from None
    return value if value not in (None, "") else default


def _int(name: str, default: int) -> int:
    return int(_env(name, str(default)))


def _float(name: str, default: float) -> float:
    return float(_env(name, str(default)))


def _bool(name: str, default: bool) -> bool:
    return (_env(name, "1" if default else "0") or "").lower() in ("1", "true", "yes", "on")


def _path(name: str, default: Path | None) -> Path | None:
    value = _env(name)
    return Path(value).expanduser().resolve() if value else default


def available_cores() -> int:
    """Cores this process may run on (respects CPU affinity, unlike os.cpu_count())."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _persistent_dev_secret(data_dir: Path) -> str:
    """A random secret kept under DATA_DIR so tokens survive restarts in development."""
    path = data_dir / "jwt_secret"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


@dataclass(frozen=True)
class Settings:
    env: str = "development"  # development | test | production
    data_dir: Path = ROOT_DIR / ".data"

    # Services. None means "start the embedded one" (see stack/embedded.py).
    database_url: str | None = None
    redis_url: str | None = None
    embedded_redis_port: int = 6399
    db_pool_size: int = 5

    # HTTP
    host: str = "127.0.0.1"
    port: int = 8000
    web_workers: int = 2
    # Long-polls (`?wait=N`) waiting at once per web process, and per organisation across all of them
    # (counted in Redis): more answer at once with `Retry-After: 1` (web/waiting.py). Per process well
    # below gunicorn's 32 threads, so short requests and probes always find one, and at most
    # DB_POOL_SIZE (a wait holds its request's database connection).
    wait_max_per_process: int = 4
    wait_max_per_organisation: int = 8
    flower_port: int = 5555
    flower_basic_auth: str | None = None  # "user:password"; Flower is protected when set
    # GET /metrics needs `Authorization: Bearer <token>` when set (production: set it, or keep
    # /metrics off the public side); open when unset, as on a developer machine.
    metrics_token: str | None = None
    # Celery task events feed Flower's task views; without Flower they are 4 Redis publishes a job.
    celery_task_events: bool = True
    proxy_hops: int = 0  # reverse proxies in front of the web app whose X-Forwarded-For is trusted
    cors_origins: tuple[str, ...] = ()

    # Auth
    jwt_secret_key: str = ""
    jwt_access_minutes: int = 15
    jwt_refresh_days: int = 30
    bcrypt_rounds: int = 12
    min_password_length: int = 10
    admin_email: str | None = None
    admin_password: str | None = None

    # Rate limits (flask-limiter syntax), stored in Redis so all gunicorn workers share them.
    ratelimit_enabled: bool = True
    ratelimit_login: str = "10/minute"
    ratelimit_submit: str = "120/minute"
    ratelimit_signup: str = "10/hour"
    ratelimit_batch: str = "10/minute"
    ratelimit_redeliver: str = "10/minute"  # POST /jobs/{id}/redeliver, per client
    signup_enabled: bool = True

    # Uploads
    max_upload_bytes: int = 10 * 1024 * 1024
    max_batch_bytes: int = 200 * 1024 * 1024  # a whole batch enrollment request
    max_image_pixels: int = 40_000_000
    min_image_side: int = 32

    # Matching. The threshold is cosine similarity between L2-normalised ArcFace embeddings.
    # The 1:1 threshold (verify), and the floor of every gallery's open-set threshold; calibrated
    # on LFW: see docs/RECOGNITION.md.
    match_threshold: float = 0.30
    # Target false-positive identification rate of a stranger in a recognition: each gallery's
    # threshold is derived from it and the gallery's face count (domain/openset.py; 0: a fixed
    # MATCH_THRESHOLD). 0.0075 keeps the measured FPIR <= 1 % (docs/RECOGNITION.md).
    match_fpir: float = 0.0075
    min_threshold: float = 0.1
    max_threshold: float = 0.95
    default_top_k: int = 5
    max_top_k: int = 50
    default_max_faces: int = 20
    max_max_faces: int = 100
    # 100: recall@1 0.996 in 6 ms for a 100k gallery with its own index, 0.966 in 11 ms in a 1M
    # shared one (PERFORMANCE.md); 64 gave 0.988 and 0.940. Below 100k faces both are ~1 ms.
    hnsw_ef_search: int = 100
    # A gallery search that HNSW leaves short of candidates (its filter runs after the scan) is
    # redone exactly when the gallery holds at most this many faces (docs: domain/matching.py).
    exact_search_max_faces: int = 20_000
    # How long a worker trusts a gallery's face count when choosing the search path (0: never).
    gallery_size_cache_seconds: float = 30.0
    # A gallery with this many faces of a model gets an HNSW index of its own (domain.gallery_indexes;
    # 0: never), checked every GALLERY_INDEX_INTERVAL seconds; builds get this maintenance_work_mem.
    gallery_index_min_faces: int = 50_000
    gallery_index_interval: float = 600.0
    gallery_index_build_memory: str = "1GB"

    # Quality gates at enrollment (see docs/RECOGNITION.md for how the defaults were chosen).
    enroll_min_face_size: float = 40.0  # pixels, shorter side of the face box
    enroll_min_det_score: float = 0.6
    enroll_min_sharpness: float = 25.0  # variance of the Laplacian on the aligned 112x112 crop
    # Degrees, estimated from the keypoints: 5 above LFW's 99.9th percentile (bench/results/pose.json).
    enroll_max_yaw: float = 70.0
    # A photo added to a person with faces must reach this similarity with one of them, else the
    # job fails `face_mismatch` (force=true overrides): LFW FMR 3.8e-4, FNMR 0.7 % (docs/RECOGNITION.md).
    enroll_consistency_threshold: float = 0.25
    # An enrollment photo whose second face is at least this fraction of the largest (shorter box
    # sides) fails `multiple_faces` (measured on LFW and real photos: docs/RECOGNITION.md).
    enroll_max_second_face_ratio: float = 0.8
    person_metadata_max_bytes: int = 4096  # a person's free-form `metadata`, as JSON
    idempotency_key_hours: int = 48  # how long an Idempotency-Key is remembered (at least 24)

    # Engine
    model_pack_dir: Path | None = None  # None: the bundled SCRFD-500M + w600k_mbf pack
    det_size: int = 640
    # Photos smaller than det_size are detected at their own size (rounded up to a multiple of 32,
    # never below this): upscaling a 250 px photo to 640 only costs time (docs/RECOGNITION.md).
    det_size_min: int = 320
    det_thresh: float = 0.5
    ort_providers: tuple[str, ...] = ("CPUExecutionProvider",)
    ort_threads: int = 0  # 0: cores divided by worker processes
    worker_concurrency: int = 2

    # Jobs
    job_soft_time_limit: int = 120
    job_max_retries: int = 10  # tries while the database is unreachable (workers/tasks.py: ~1 min or more)
    job_requeue_after: int = 600  # seconds a job may stay queued before the reaper sends it again
    reaper_interval: float = 60.0  # seconds between two reaper runs (Celery beat)
    # `make run` pings the worker through the broker this often (0: never) and restarts it after
    # this many unanswered pings in a row while the broker is up (a consumer that did not recover).
    worker_liveness_interval: float = 30.0
    worker_liveness_failures: int = 3
    # ...and counts a check as failed when the worker answers, yet jobs have waited this long with
    # none started (0: never). Longer than a job may run (JOB_SOFT_TIME_LIMIT + 60).
    worker_stall_seconds: float = 180.0
    job_running_deadline: int = 600  # seconds running before a job is re-queued (once), then failed `timeout`
    job_retention_days: int = 7  # finished jobs and their results are purged after this

    # Webhooks
    webhook_max_attempts: int = 8
    webhook_retry_base_seconds: float = 10.0  # exponential backoff with jitter from this base
    webhook_timeout_seconds: float = 10.0
    webhook_allowed_hosts: tuple[str, ...] = ()  # host, host:port or host:* let through the SSRF guard
    webhook_max_pending: int = 1000  # deliveries (with their retries) under way per organisation

    # Datasets for tests and benchmarks (never copied into the repository)
    faces_dataset_dir: Path | None = None
    lfw_dir: Path | None = None

    @property
    def is_production(self) -> bool:
        return self.env not in ("development", "test")

    def enrollment_policy(self) -> dict[str, float]:
        """The enrollment rules' limits (domain/enrollment.py), stored with each enrollment job
        when it is submitted, so a job is judged by the policy its submitter saw."""
        return {
            "min_face_size": self.enroll_min_face_size,
            "min_det_score": self.enroll_min_det_score,
            "min_sharpness": self.enroll_min_sharpness,
            "max_yaw": self.enroll_max_yaw,
            "min_consistency": self.enroll_consistency_threshold,
            "max_second_face_ratio": self.enroll_max_second_face_ratio,
        }

    def ort_intra_threads(self) -> int:
        """Threads per onnxruntime session so that processes x threads matches the cores."""
        if self.ort_threads > 0:
            return self.ort_threads
        return max(1, available_cores() // max(1, self.worker_concurrency))


def load_settings() -> Settings:
    env = _env("FACEAPI_ENV", "development")
    data_dir = _path("DATA_DIR", ROOT_DIR / ".data")
    secret = _env("JWT_SECRET_KEY")
    if secret is None and env in ("development", "test"):
        secret = _persistent_dev_secret(data_dir)
    return Settings(
        env=env,
        data_dir=data_dir,
        database_url=_env("DATABASE_URL"),
        redis_url=_env("REDIS_URL"),
        embedded_redis_port=_int("EMBEDDED_REDIS_PORT", 6399),
        db_pool_size=_int("DB_POOL_SIZE", 5),
        host=_env("HOST", "127.0.0.1"),
        port=_int("PORT", 8000),
        web_workers=_int("WEB_WORKERS", 2),
        wait_max_per_process=_int("WAIT_MAX_PER_PROCESS", 4),
        wait_max_per_organisation=_int("WAIT_MAX_PER_ORGANISATION", 8),
        flower_port=_int("FLOWER_PORT", 5555),
        flower_basic_auth=_env("FLOWER_BASIC_AUTH"),
        metrics_token=_env("METRICS_TOKEN"),
        celery_task_events=_bool("CELERY_TASK_EVENTS", True),
        proxy_hops=_int("PROXY_HOPS", 0),
        cors_origins=tuple(o.strip() for o in (_env("CORS_ORIGINS", "") or "").split(",") if o.strip()),
        jwt_secret_key=secret or "",
        jwt_access_minutes=_int("JWT_ACCESS_MINUTES", 15),
        jwt_refresh_days=_int("JWT_REFRESH_DAYS", 30),
        bcrypt_rounds=_int("BCRYPT_ROUNDS", 12),
        min_password_length=_int("MIN_PASSWORD_LENGTH", 10),
        admin_email=_env("ADMIN_EMAIL"),
        admin_password=_env("ADMIN_PASSWORD"),
        ratelimit_enabled=_bool("RATELIMIT_ENABLED", True),
        ratelimit_login=_env("RATELIMIT_LOGIN", "10/minute"),
        ratelimit_submit=_env("RATELIMIT_SUBMIT", "120/minute"),
        ratelimit_signup=_env("RATELIMIT_SIGNUP", "10/hour"),
        ratelimit_batch=_env("RATELIMIT_BATCH", "10/minute"),
        ratelimit_redeliver=_env("RATELIMIT_REDELIVER", "10/minute"),
        # Off outside development: the usual deployment is an organisation's internal service.
        signup_enabled=_bool("SIGNUP_ENABLED", env in ("development", "test")),
        max_upload_bytes=_int("MAX_UPLOAD_BYTES", 10 * 1024 * 1024),
        max_batch_bytes=_int("MAX_BATCH_BYTES", 200 * 1024 * 1024),
        max_image_pixels=_int("MAX_IMAGE_PIXELS", 40_000_000),
        min_image_side=_int("MIN_IMAGE_SIDE", 32),
        match_threshold=_float("MATCH_THRESHOLD", 0.30),
        match_fpir=_float("MATCH_FPIR", 0.0075),
        default_top_k=_int("DEFAULT_TOP_K", 5),
        max_top_k=_int("MAX_TOP_K", 50),
        default_max_faces=_int("DEFAULT_MAX_FACES", 20),
        max_max_faces=_int("MAX_MAX_FACES", 100),
        hnsw_ef_search=_int("HNSW_EF_SEARCH", 100),
        exact_search_max_faces=_int("EXACT_SEARCH_MAX_FACES", 20_000),
        gallery_size_cache_seconds=_float("GALLERY_SIZE_CACHE_SECONDS", 30.0),
        gallery_index_min_faces=_int("GALLERY_INDEX_MIN_FACES", 50_000),
        gallery_index_interval=_float("GALLERY_INDEX_INTERVAL", 600.0),
        gallery_index_build_memory=os.environ.get("GALLERY_INDEX_BUILD_MEMORY", "1GB"),
        enroll_min_face_size=_float("ENROLL_MIN_FACE_SIZE", 40.0),
        enroll_min_det_score=_float("ENROLL_MIN_DET_SCORE", 0.6),
        enroll_min_sharpness=_float("ENROLL_MIN_SHARPNESS", 25.0),
        enroll_max_yaw=_float("ENROLL_MAX_YAW", 70.0),
        enroll_consistency_threshold=_float("ENROLL_CONSISTENCY_THRESHOLD", 0.25),
        enroll_max_second_face_ratio=_float("ENROLL_MAX_SECOND_FACE_RATIO", 0.8),
        person_metadata_max_bytes=_int("PERSON_METADATA_MAX_BYTES", 4096),
        idempotency_key_hours=max(24, _int("IDEMPOTENCY_KEY_HOURS", 48)),
        model_pack_dir=_path("MODEL_PACK_DIR", None),
        det_size=_int("DET_SIZE", 640),
        det_size_min=_int("DET_SIZE_MIN", 320),
        det_thresh=_float("DET_THRESH", 0.5),
        ort_providers=tuple(
            p.strip() for p in (_env("ORT_PROVIDERS", "CPUExecutionProvider") or "").split(",") if p.strip()
        ),
        ort_threads=_int("ORT_THREADS", 0),
        worker_concurrency=_int("WORKER_CONCURRENCY", 2),
        job_soft_time_limit=_int("JOB_SOFT_TIME_LIMIT", 120),
        job_max_retries=_int("JOB_MAX_RETRIES", 10),
        job_requeue_after=_int("JOB_REQUEUE_AFTER", 600),
        reaper_interval=_float("REAPER_INTERVAL", 60.0),
        worker_liveness_interval=_float("WORKER_LIVENESS_INTERVAL", 30.0),
        worker_liveness_failures=_int("WORKER_LIVENESS_FAILURES", 3),
        worker_stall_seconds=_float("WORKER_STALL_SECONDS", 180.0),
        job_running_deadline=_int("JOB_RUNNING_DEADLINE", 600),
        job_retention_days=_int("JOB_RETENTION_DAYS", 7),
        webhook_max_attempts=_int("WEBHOOK_MAX_ATTEMPTS", 8),
        webhook_retry_base_seconds=_float("WEBHOOK_RETRY_BASE_SECONDS", 10.0),
        webhook_timeout_seconds=_float("WEBHOOK_TIMEOUT_SECONDS", 10.0),
        webhook_allowed_hosts=tuple(
            h.strip().lower() for h in (_env("WEBHOOK_ALLOWED_HOSTS", "") or "").split(",") if h.strip()
        ),
        webhook_max_pending=_int("WEBHOOK_MAX_PENDING", 1000),
        faces_dataset_dir=_path("FACES_DATASET_DIR", None),
        lfw_dir=_path("LFW_DIR", None),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
