"""Every setting of the service, declared once: its environment variable, type, default and limits.

A setting's variable is its field's name upper-cased (``FACEAPI_ENV`` for ``env``); an empty
variable counts as unset, and ``NAME_FILE=/path`` is read when ``NAME`` is unset (Docker and
Kubernetes secrets are files). A wrong value stops the process as it starts, with a message that
names the variable (``PORT: expected an integer, got 'abc'``), not later at first use.

Defaults are safe for a developer machine: embedded PostgreSQL and Redis under
``DATA_DIR``, services bound to loopback, signup off, CORS closed.
Production sets ``FACEAPI_ENV=production``, ``DATABASE_URL``, ``REDIS_URL`` and
``JWT_SECRET_KEY`` (the web app refuses to start without a strong secret there).

The processes' entry points (stack/, the web and Celery app factories, gunicorn.conf.py, the
benches and CLIs) call ``get_settings()``; the code below them gets the settings object passed in.

The fields are declared in sections, one class per concern (``Service``, ``Stores``, ``Web``, ...,
``SECTIONS``; docs/SETTINGS.md has one table each), which ``Settings`` inherits: a reader finds a
setting by its concern, and code still reads ``settings.max_top_k``. Sections and not nested models
(``settings.matching.max_top_k``): pydantic-settings reads a nested model's field from
``MATCHING__MAX_TOP_K`` (or JSON in ``MATCHING``), so keeping every variable's name, which
deployments depend on, would take an alias per field, and every reader would change.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, ValidationError
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

ROOT_DIR = Path(__file__).resolve().parent.parent

# Secrets nobody may run production with (examples from docs and compose files).
WELL_KNOWN_SECRETS = frozenset({"", "secret", "changeme", "change-me", "dev", "development", "test"})
DEVELOPMENT_ENVS = ("development", "test")


class SettingsError(RuntimeError):
    """A setting's value is wrong or unreadable; the message names its variable."""


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


def _default_jwt_secret(settings: dict[str, Any]) -> str:
    # Development and tests get a persistent random secret; production must set one (web/__init__.py).
    if settings.get("env") in DEVELOPMENT_ENVS and "data_dir" in settings:
        return _persistent_dev_secret(settings["data_dir"])
    return ""


def _split_commas(value: Any) -> Any:
    """Lists are comma-separated in the environment (`a.example, b.example`), not JSON."""
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


def _rate_limit(value: str) -> str:
    from limits import parse_many

    try:
        parse_many(value)
    except ValueError:
        raise ValueError(f"expected a rate limit such as '10/minute' or '100 per hour', got {value!r}") from None
    return value


# Types shared by several settings: the constraint is what the code relies on.
CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_split_commas)]
ResolvedPath = Annotated[Path, AfterValidator(lambda path: path.expanduser().resolve())]
Port = Annotated[int, Field(ge=1, le=65535)]
Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
Seconds = Annotated[float, Field(ge=0)]  # 0 turns the check off where the comment says so
Similarity = Annotated[float, Field(ge=0, le=1)]  # cosine similarity of normalised embeddings
Pixels = Annotated[float, Field(ge=0)]  # a length in an image's pixels; 0 turns the check off
# The variance of the Laplacian of a face's aligned 112x112 crop (higher is sharper); 0 turns it off.
Sharpness = Annotated[float, Field(ge=0)]
Score = Annotated[float, Field(ge=0, le=1)]  # the detector's confidence that a box is a face
RateLimit = Annotated[str, AfterValidator(_rate_limit)]  # flask-limiter syntax


class _SecretFilesSource(PydanticBaseSettingsSource):
    """NAME_FILE=/path supplies NAME when NAME is unset or empty (Docker and Kubernetes secrets are
    files: DATABASE_URL_FILE=/run/secrets/database_url), less the file's final newline."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every field at once

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for field_name in self.settings_cls.model_fields:
            variable = env_variable(field_name)
            path = os.environ.get(f"{variable}_FILE")
            if os.environ.get(variable) or not path:
                continue
            try:
                content = Path(path).read_text().rstrip("\r\n")
            except OSError as error:
                raise SettingsError(f"{variable}_FILE: cannot read {path}: {error.strerror}") from None
            if content:
                values[field_name] = content
        return values


# --- Sections: each declares the settings of one concern (docs/SETTINGS.md has one table each) -----


class Service(BaseModel):
    """What the instance is and where it keeps its data."""

    env: str = Field("development", validation_alias="FACEAPI_ENV")  # development | test | production
    data_dir: ResolvedPath = ROOT_DIR / ".data"  # embedded services' data, the development JWT secret

    @property
    def is_production(self) -> bool:
        return self.env not in DEVELOPMENT_ENVS


class Stores(BaseModel):
    """PostgreSQL and Redis. None means "start the embedded one" (see stack/embedded.py)."""

    database_url: str | None = None
    redis_url: str | None = None
    embedded_redis_port: Port = 6399
    db_pool_size: Positive = 5  # SQLAlchemy connections per process


class Web(BaseModel):
    """The web app's HTTP side."""

    host: str = "127.0.0.1"  # bind address of the web app and Flower
    port: Port = 8000
    web_workers: Positive = 2  # gunicorn worker processes
    # Long-polls (`?wait=N`) waiting at once per web process, and per organisation across all of them
    # (counted in Redis): more answer at once with `Retry-After: 1` (web/waiting.py). Per process half
    # of gunicorn's 32 threads, so short requests and probes always find one (a wait holds a thread,
    # not a database connection); per organisation enough for 16 clients submitting and waiting.
    wait_max_per_process: Positive = 16
    wait_max_per_organisation: Positive = 32
    proxy_hops: NonNegative = 0  # reverse proxies in front of the web app whose X-Forwarded-For is trusted
    cors_origins: CommaList = ()  # allowed origins; none: CORS closed


class Monitoring(BaseModel):
    """Flower, /metrics and the task events they read."""

    flower_port: Port = 5555
    flower_basic_auth: str | None = None  # "user:password"; Flower is protected when set
    # GET /metrics needs `Authorization: Bearer <token>` when set (production: set it, or keep
    # /metrics off the public side); open when unset, as on a developer machine.
    metrics_token: str | None = None
    # The workers' task events feed Flower's task views; without Flower they are 3 Redis publishes a job
    # (Flower turns them on in the workers while it runs, whatever this says).
    celery_task_events: bool = True


class Auth(BaseModel):
    """Tokens, passwords, the first admin and signup."""

    jwt_secret_key: str = Field(default_factory=_default_jwt_secret)  # HS256 signing secret
    jwt_access_minutes: Positive = 15
    jwt_refresh_days: Positive = 30
    bcrypt_rounds: Annotated[int, Field(ge=4, le=31)] = 12  # bcrypt's own limits
    min_password_length: Positive = 10
    admin_email: str | None = None  # the first admin, created at start when there is none
    admin_password: str | None = None
    # Off outside development: the usual deployment is an organisation's internal service.
    signup_enabled: bool = Field(default_factory=lambda settings: settings.get("env") in DEVELOPMENT_ENVS)


class Quotas(BaseModel):
    """What one client or organisation may ask for: rate limits (flask-limiter syntax, stored in
    Redis so all gunicorn workers share them), the cost it may have pending, its API keys."""

    ratelimit_enabled: bool = True
    ratelimit_login: RateLimit = "10/minute"
    ratelimit_submit: RateLimit = "120/minute"
    ratelimit_signup: RateLimit = "10/hour"
    ratelimit_batch: RateLimit = "10/minute"
    ratelimit_redeliver: RateLimit = "10/minute"  # POST /jobs/{id}/redeliver, per client
    # Cost units (a photo: one per started 6 MP, domain/budget.py) an organisation may have queued
    # or running, over every submission route: a full batch of 500 phone photos (12 MP, 3 each) fits
    # whole with 500 to spare; about 100 s of one worker process's time (0.1 s a unit).
    org_max_pending_cost: Positive = 2000
    # Live API keys an organisation may hold: each key has its own rate-limit bucket, so the cap
    # bounds what one organisation can send (10 keys x RATELIMIT_SUBMIT).
    api_keys_max_per_organisation: Positive = 10


class Requests(BaseModel):
    """What one request may carry, and where its photos wait for a worker."""

    max_upload_bytes: Positive = 10 * 1024 * 1024
    max_batch_bytes: Positive = 200 * 1024 * 1024  # a whole batch enrollment request
    # Photos one `POST /recognize` may send as `images` parts (one job; each photo counts against
    # the budget). 32 phone photos fit in one worker's memory: only each face's crop is kept.
    recognize_max_images: Positive = 32
    # Where a queued job's photos wait for a worker: `database` (the job's row: in the WAL, kept
    # through any restart) or `redis` (no WAL, a fifth of the CPU; lost with the Redis host:
    # PERFORMANCE.md, section 12). A photo in Redis expires after UPLOAD_TTL_SECONDS at most.
    upload_store: Literal["database", "redis"] = "database"
    upload_ttl_seconds: Positive = 24 * 3600
    max_image_pixels: Positive = 40_000_000
    min_image_side: Positive = 32
    person_metadata_max_bytes: Positive = 4096  # a person's free-form `metadata`, as JSON


class Matching(BaseModel):
    """When a face is someone, and how much a recognition answers. The threshold is cosine
    similarity between L2-normalised ArcFace embeddings."""

    # The 1:1 threshold (verify), and the floor of every gallery's open-set threshold; calibrated
    # on LFW: see docs/RECOGNITION.md.
    match_threshold: Similarity = 0.30
    # Target false-positive identification rate of a stranger in a recognition: each gallery's
    # threshold is derived from it and the gallery's face count (domain/openset.py; 0: a fixed
    # MATCH_THRESHOLD). 0.0075 keeps the measured FPIR <= 1 % (docs/RECOGNITION.md).
    match_fpir: Annotated[float, Field(ge=0, lt=1)] = 0.0075
    min_threshold: Similarity = 0.1  # the range a request's own `threshold` may take
    max_threshold: Similarity = 0.95
    default_top_k: Positive = 5
    max_top_k: Positive = 50
    default_max_faces: Positive = 20
    max_max_faces: Positive = 100


class Search(BaseModel):
    """How pgvector searches a gallery, and the galleries' own indexes."""

    # 100: recall@1 0.996 in 6 ms for a 100k gallery with its own index, 0.966 in 11 ms in a 1M
    # shared one (PERFORMANCE.md); 64 gave 0.988 and 0.940. Below 100k faces both are ~1 ms.
    # pgvector accepts 1 to 1000.
    hnsw_ef_search: Annotated[int, Field(ge=1, le=1000)] = 100
    # A gallery search that HNSW leaves short of candidates (its filter runs after the scan) is
    # redone exactly when the gallery holds at most this many faces (docs: domain/matching.py).
    exact_search_max_faces: NonNegative = 20_000
    # How long a worker trusts a large gallery's face count (domain/matching.py; 0: never).
    gallery_size_cache_seconds: Seconds = 30.0
    # A gallery with this many faces of a model gets an HNSW index of its own (domain.gallery_indexes;
    # 0: never), checked every GALLERY_INDEX_INTERVAL seconds; builds get this maintenance_work_mem.
    gallery_index_min_faces: NonNegative = 50_000
    gallery_index_interval: Annotated[float, Field(gt=0)] = 600.0
    gallery_index_build_memory: Annotated[str, Field(pattern=r"^\d+\s*(kB|MB|GB|TB)?$")] = "1GB"


class Enrollment(BaseModel):
    """The enrollment rules' limits (see docs/RECOGNITION.md for how the defaults were chosen)."""

    # Quality gates.
    enroll_min_face_size: Pixels = 40.0  # pixels, shorter side of the face box
    enroll_min_det_score: Score = 0.6
    enroll_min_sharpness: Sharpness = 25.0  # variance of the Laplacian on the aligned 112x112 crop
    # Degrees, estimated from the keypoints: 5 above LFW's 99.9th percentile (bench/results/pose.json).
    enroll_max_yaw: Annotated[float, Field(ge=0, le=90)] = 70.0
    # A photo added to a person with faces must reach this similarity with one of them, else the
    # job fails `face_mismatch` (force=true overrides): LFW FMR 3.8e-4, FNMR 0.7 % (docs/RECOGNITION.md).
    enroll_consistency_threshold: Similarity = 0.25
    # An enrollment photo whose second face is at least this fraction of the largest (shorter box
    # sides) fails `multiple_faces` (measured on LFW and real photos: docs/RECOGNITION.md).
    enroll_max_second_face_ratio: Annotated[float, Field(gt=0)] = 0.8
    # Keep each enrolled face's aligned 112x112 crop (JPEG, a few kB) beside its embedding, for
    # people to look at; biometric data, deleted with the face. Off: faces keep the embedding only.
    store_face_crops: bool = True
    # A new face that matches ANOTHER person of the gallery above the gallery's threshold: `warn`
    # reports it (possible_duplicate_of), `refuse` fails the job `identity_exists` (force=true overrides).
    enroll_duplicate_identity: Literal["warn", "refuse"] = "warn"
    # A face at least this similar to a stored face is that face again (the same photo re-encoded or
    # with bytes appended), not a new photo: docs/RECOGNITION.md has the measurement.
    enroll_same_face_similarity: Similarity = 0.98

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


class Engine(BaseModel):
    """The models a worker loads and how it runs them."""

    model_pack_dir: ResolvedPath | None = None  # None: the bundled SCRFD-500M + w600k_mbf pack
    # Directories of recognizers a worker keeps loadable beside MODEL_PACK_DIR's: a gallery embedded
    # with one of them is served by it until it is re-embedded (docs/RECOGNITION.md, "Changing the model").
    previous_model_dirs: CommaList = ()
    det_size: Annotated[int, Field(ge=32)] = 640  # the detector's input side, at most
    # Photos smaller than det_size are detected at their own size (rounded up to a multiple of 32,
    # never below this): upscaling a 250 px photo to 640 only costs time; 256 moved the keypoints
    # of faces that fill a small photo (docs/RECOGNITION.md).
    det_size_min: Annotated[int, Field(ge=32)] = 320
    det_thresh: Annotated[float, Field(gt=0, lt=1)] = 0.5  # detector score threshold
    ort_providers: CommaList = ("CPUExecutionProvider",)  # in order; an unavailable one is an error
    ort_threads: NonNegative = 0  # 0: cores divided by worker processes


class Jobs(BaseModel):
    """The workers, a job's limits, the reaper and what is purged when."""

    worker_concurrency: Positive = 2  # Celery worker processes, each with its own engine
    job_soft_time_limit: Positive = 120  # seconds a job may run
    job_max_retries: NonNegative = 10  # retries of a database error while it answers (unreachable: until it is back)
    job_requeue_after: Positive = 600  # seconds a job may stay queued before the reaper sends it again
    reaper_interval: Annotated[float, Field(gt=0)] = 60.0  # seconds between two reaper runs (Celery beat)
    # `make run` pings the worker through the broker this often (0: never) and restarts it after
    # this many unanswered pings in a row while the broker is up (a consumer that did not recover).
    worker_liveness_interval: Seconds = 30.0
    worker_liveness_failures: Positive = 3
    # ...and counts a check as failed when the worker answers, yet jobs have waited this long with
    # none started (0: never). Longer than a job may run (JOB_SOFT_TIME_LIMIT + 60).
    worker_stall_seconds: Seconds = 180.0
    job_running_deadline: Positive = 600  # seconds running before a job is re-queued (once), then failed `timeout`
    job_retention_days: Positive = 7  # finished jobs and their results are purged after this
    # How long an Idempotency-Key is remembered: a client retries for up to a day.
    idempotency_key_hours: Annotated[int, Field(ge=24)] = 48


class Unknowns(BaseModel):
    """Recurring unknown faces, for galleries that opt in (docs/UNKNOWNS.md): an unmatched face joins
    the group whose centroid is at least this similar (chosen on LFW for BCubed purity >= 0.98:
    bench/results/unknowns.json), a group is `recurring` (webhook `unknown.recurring`) at this many
    sightings, naming a group as a person takes at most this many of its best faces, and the
    re-grouping and retention purge run this often (seconds)."""

    unknowns_group_threshold: Similarity = 0.35
    unknowns_recurring_sightings: Annotated[int, Field(ge=2)] = 3
    unknowns_enroll_max_faces: Positive = 5
    unknowns_housekeeping_interval: Annotated[float, Field(gt=0)] = 3600.0


class Portability(BaseModel):
    """Gallery export and import (docs/EXPORT.md): how long an export's archive may be downloaded
    (then it is deleted), and the largest archive an export writes or an import accepts (stored in
    PostgreSQL)."""

    gallery_export_ttl_seconds: Positive = 3600
    gallery_archive_max_bytes: Positive = 512 * 1024 * 1024


class Webhooks(BaseModel):
    """Deliveries of the job, batch and unknown-face events."""

    webhook_max_attempts: Positive = 8
    webhook_retry_base_seconds: Annotated[float, Field(gt=0)] = 10.0  # exponential backoff with jitter from this base
    webhook_timeout_seconds: Annotated[float, Field(gt=0)] = 10.0  # one attempt's wall-clock deadline
    # host, host:port or host:* let through the SSRF guard
    webhook_allowed_hosts: Annotated[CommaList, AfterValidator(lambda hosts: tuple(h.lower() for h in hosts))] = ()
    webhook_max_pending: Positive = 1000  # deliveries (with their retries) under way per organisation


class Datasets(BaseModel):
    """Real-photo datasets for tests and benchmarks (never copied into the repository)."""

    faces_dataset_dir: ResolvedPath | None = None
    lfw_dir: ResolvedPath | None = None


# In the order of docs/SETTINGS.md's tables.
SECTIONS: tuple[type[BaseModel], ...] = (
    Service,
    Stores,
    Web,
    Monitoring,
    Auth,
    Quotas,
    Requests,
    Matching,
    Search,
    Enrollment,
    Engine,
    Jobs,
    Unknowns,
    Portability,
    Webhooks,
    Datasets,
)


# The sections are listed last first: pydantic validates the fields of the last base first, and
# Auth's defaults (JWT_SECRET_KEY, SIGNUP_ENABLED) read Service's FACEAPI_ENV and DATA_DIR.
class Settings(
    Datasets,
    Webhooks,
    Portability,
    Unknowns,
    Jobs,
    Engine,
    Enrollment,
    Search,
    Matching,
    Requests,
    Quotas,
    Auth,
    Monitoring,
    Web,
    Stores,
    Service,
    BaseSettings,
):
    """Every setting, one field each (its environment variable is its name), declared by section."""

    model_config = SettingsConfigDict(
        frozen=True,
        env_ignore_empty=True,  # VAR= counts as unset, as in shell scripts and compose files
        validate_by_name=True,  # Settings(env="test") as well as FACEAPI_ENV
        extra="forbid",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Arguments, then NAME, then NAME_FILE, then the defaults; no .env file is read.
        return init_settings, env_settings, _SecretFilesSource(settings_cls)

    def ort_intra_threads(self) -> int:
        """Threads per onnxruntime session so that processes x threads matches the cores."""
        if self.ort_threads > 0:
            return self.ort_threads
        return max(1, available_cores() // max(1, self.worker_concurrency))


def env_variable(field_name: str) -> str:
    """The environment variable of a setting."""
    alias = Settings.model_fields[field_name].validation_alias
    return alias if isinstance(alias, str) else field_name.upper()


_EXPECTED = {
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_parsing": "expected a number",
    "bool_parsing": "expected true or false (1/0, yes/no, on/off)",
    "string_pattern_mismatch": "expected a size such as 512MB or 1GB",
}
_BOUNDS = {
    "greater_than_equal": ("ge", "at least"),
    "greater_than": ("gt", "more than"),
    "less_than_equal": ("le", "at most"),
    "less_than": ("lt", "less than"),
}


def _describe(error: dict[str, Any]) -> str:
    """One wrong value as `NAME: expected ..., got 'value'`."""
    field = str(error["loc"][0]) if error["loc"] else ""
    variable = env_variable(field) if field in Settings.model_fields else field.upper()
    kind = error["type"]
    if kind in _BOUNDS:
        bound, words = _BOUNDS[kind]
        expected = f"expected {words} {error['ctx'][bound]}"
    elif kind == "value_error":
        return f"{variable}: {error['ctx']['error']}"
    else:
        expected = _EXPECTED.get(kind, error["msg"].replace("Input should be", "expected"))
    return f"{variable}: {expected}, got {error['input']!r}"


def load_settings(**values: Any) -> Settings:
    """The settings from the environment (`values` win), or SettingsError naming every wrong variable."""
    try:
        return Settings(**values)
    except ValidationError as invalid:
        problems = [_describe(e) for e in invalid.errors() if e["type"] != "default_factory_not_called"]
        raise SettingsError("\n".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings: read by its entry points only, which pass them on."""
    return load_settings()


def get_settings_or_exit() -> Settings:
    """get_settings() for a command line: wrong settings end the process with their message,
    not a traceback."""
    try:
        return get_settings()
    except SettingsError as wrong:
        raise SystemExit(f"faceapi: invalid settings\n{wrong}") from None
