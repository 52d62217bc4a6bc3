"""Static checks of the deployment files: Dockerfile, docker-compose.yml and .dockerignore.

No Docker engine and no services are needed, and no fixture is used. Every process's command line
is defined once (stack/serve.py, gunicorn.conf.py and the Celery configuration); the image's
entrypoint and every compose service name a role of it, so what is checked here is that they do,
and what those definitions resolve to under a container's environment (gunicorn's own parser reads
gunicorn.conf.py, Celery's configuration is built, every module is findable). Every environment
variable is one that config/__init__.py reads, and the Dockerfile copies files that exist and runs
as a non-root user. Imports of the application run in a subprocess with a container-like
environment, so that the settings of other tests in the same session cannot leak in (nor these
into them).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

REQUIRED_SERVICES = {"db", "redis", "migrate", "web", "worker", "beat", "flower"}
APP_SERVICES = {"migrate", "web", "worker", "beat", "flower", "backup"}
ROLES = {name: name for name in APP_SERVICES}
ENTRYPOINT = ["python", "-m", "stack.serve"]
GUNICORN_APP = "web:create_app()"
# Variables the image or compose file may set that are not application settings.
NON_SETTING_ENV = {"PATH", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PIP_NO_CACHE_DIR"}
NON_SETTING_ENV |= {"PIP_DISABLE_PIP_VERSION_CHECK", "MPLCONFIGDIR"}
# albumentations (imported by insightface) asks PyPI for a newer version at every import otherwise.
NON_SETTING_ENV |= {"NO_ALBUMENTATIONS_UPDATE"}
# Settings that hold secrets: in compose they come from files under ./secrets (NAME_FILE), never
# from the environment or the compose file.
SECRET_SETTINGS = {
    "DATABASE_URL",
    "REDIS_URL",
    "JWT_SECRET_KEY",
    "FLOWER_BASIC_AUTH",
    "METRICS_TOKEN",
    "ADMIN_PASSWORD",
}
WORKERS_COMPOSE = ROOT / "deploy" / "compose" / "workers.yml"
SHARED_SERVICES_COMPOSE = ROOT / "deploy" / "compose" / "shared-services.yml"
CADDYFILE = ROOT / "deploy" / "caddy" / "Caddyfile"
MAKE_SECRETS = ROOT / "deploy" / "compose" / "make-secrets.sh"
ENV_EXAMPLE = ROOT / ".env.example"
HEAVY_MODULES = ("insightface", "onnxruntime", "cv2")

# A strong, throwaway secret for the subprocess that builds the app as production would.
CONTAINER_ENV = {
    "FACEAPI_ENV": "production",
    "JWT_SECRET_KEY": "x" * 24 + "deploy-files-test-secret",
    "DATABASE_URL": "postgresql://faceapi:unused@127.0.0.1:9/faceapi",
    "REDIS_URL": "redis://127.0.0.1:9/0",
    "FLOWER_BASIC_AUTH": "ops:deploy-files-test-password",  # production's Flower refuses to start without
    "HOST": "0.0.0.0",
    "PORT": "8000",
    "DATA_DIR": "/var/lib/faceapi",
    "WORKER_CONCURRENCY": "3",
}

_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


# ---------------------------------------------------------------- helpers


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def interpolate(value: str, environment: dict[str, str] | None = None) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}` against `environment`; `$$` is a `$`."""
    environment = environment or {}

    def replace(match: re.Match) -> str:
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        if environment.get(name):
            return environment[name]
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            return f"<{name}>"  # compose would refuse to start without it: any placeholder will do
        return ""

    return _INTERPOLATION.sub(replace, value).replace("$$", "$")


def command_of(service: dict) -> list[str]:
    command = service.get("command")
    if command is None:
        return []
    words = shlex.split(command) if isinstance(command, str) else [str(word) for word in command]
    return [interpolate(word) for word in words]


def environment_of(service: dict) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) if "=" in item else (item, "") for item in environment)
    return {str(key): "" if value is None else str(value) for key, value in environment.items()}


def config_env_names() -> set[str]:
    """Every variable config/__init__.py reads: each setting's, and NAME_FILE for each (a file with
    its value)."""
    from config import Settings, env_variable

    names = {env_variable(field) for field in Settings.model_fields}
    return names | {f"{name}_FILE" for name in names}


def run_python(code: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `code` in the repository root with a clean, container-like environment."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "PYTHONPATH": str(ROOT)}
    env.update(CONTAINER_ENV)
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends in a line continuation"
    return instructions


def exec_form_or_words(arguments: str) -> list[str]:
    if arguments.startswith("["):
        return [str(word) for word in json.loads(arguments)]
    return shlex.split(arguments)


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [index for index, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert starts, "the Dockerfile has no FROM"
    return instructions[starts[-1] :]


def dockerignore_patterns() -> list[str]:
    if not DOCKERIGNORE.exists():
        return []
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def ignored_by_dockerignore(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: the last matching pattern wins; a pattern matches a path or its parents."""
    parts = Path(path).parts
    candidates = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        variants = {pattern, pattern.removeprefix("**/")}
        if any(fnmatch.fnmatch(candidate, variant) for candidate in candidates for variant in variants):
            ignored = not negate
    return ignored


def option_value(command: list[str], option: str) -> str | None:
    for index, word in enumerate(command):
        if word == option and index + 1 < len(command):
            return command[index + 1]
        if word.startswith(option + "="):
            return word.split("=", 1)[1]
    return None


def role_of(service: dict) -> str:
    """The stack.serve role a compose service runs: its command is one role, no options (backup
    takes its directory)."""
    command = command_of(service)
    assert len(command) == 1 or command[0] == "backup", f"one role of stack/serve.py, not a command line: {command}"
    return command[0]


def resolved(extra_env: dict[str, str] | None = None) -> dict:
    """What the single definitions resolve to in a container's environment: each role's argv
    (stack.serve), gunicorn's settings as gunicorn itself parses gunicorn.conf.py, and Celery's."""
    code = """
import json, sys
from stack import serve
sys.argv = ["gunicorn", *serve.command("web")[3:]]
from gunicorn.app.wsgiapp import WSGIApplication
web = WSGIApplication()
cfg = web.cfg
from workers.celery_app import make_celery
conf = make_celery().conf
print(json.dumps({
    "roles": {role: serve.command(role) for role in serve.ROLES},
    "gunicorn": {"bind": cfg.bind, "workers": cfg.workers, "worker_class": cfg.worker_class_str,
                 "threads": cfg.threads, "timeout": cfg.timeout, "graceful_timeout": cfg.graceful_timeout,
                 "control_socket": cfg.control_socket, "control_socket_disable": cfg.control_socket_disable,
                 "app": web.app_uri},
    "celery": {"concurrency": conf.worker_concurrency, "pool": conf.worker_pool,
               "schedule": conf.beat_schedule_filename, "acks_late": conf.task_acks_late},
}))
"""
    completed = run_python(code, extra_env)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- docker-compose.yml


def test_compose_has_the_required_services():
    services = load_compose()["services"]
    missing = REQUIRED_SERVICES - set(services)
    assert not missing, f"docker-compose.yml lacks {sorted(missing)}"


def test_infrastructure_services():
    compose = load_compose()
    services, volumes = compose["services"], set(compose.get("volumes") or {})

    db = services["db"]
    assert interpolate(db["image"]).startswith("pgvector/pgvector:pg16")  # by default; a mirror may replace it
    assert "pg_isready" in json.dumps(db["healthcheck"]["test"])
    assert environment_of(db).get("POSTGRES_DB") == "faceapi"
    assert environment_of(db).get("POSTGRES_USER") == "faceapi"
    assert environment_of(db).get("POSTGRES_PASSWORD_FILE") == "/run/secrets/postgres_password"
    assert "POSTGRES_PASSWORD" not in environment_of(db)
    # A vanished client's session (a worker host cut off) does not hold its locks for hours.
    assert any("idle_in_transaction_session_timeout" in word for word in command_of(db))

    redis = services["redis"]
    redis_image = interpolate(redis["image"])
    assert redis_image.split(":")[0] == "redis" and redis_image.split(":")[1].startswith("7")
    script = " ".join(command_of(redis))
    assert "--appendonly yes" in script
    assert "requirepass" in script and "/run/secrets/redis_password" in script, "Redis must require a password"
    assert "redis_password" in redis["secrets"]
    check = json.dumps(redis["healthcheck"]["test"])
    assert "redis-cli" in check and "REDISCLI_AUTH" in check

    for name in ("db", "redis"):
        named = [str(volume).split(":")[0] for volume in services[name].get("volumes", [])]
        assert named and all(volume in volumes for volume in named), f"{name} must keep its data in a named volume"


def test_app_services_share_one_image_and_environment():
    services = load_compose()["services"]
    images = {services[name].get("image") for name in APP_SERVICES}
    builds = {json.dumps(services[name].get("build"), sort_keys=True) for name in APP_SERVICES}
    assert len(images) == 1 and None not in images, f"one image for all app services, got {images}"
    assert len(builds) == 1 and builds != {"null"}, "every app service builds the same Dockerfile"
    environments = {name: environment_of(services[name]) for name in APP_SERVICES}
    shared = environments["web"]
    for name, environment in environments.items():
        extra = {key: value for key, value in environment.items() if key not in shared}
        assert {key: environment[key] for key in shared} == shared, name
        assert set(extra) <= ({"ADMIN_EMAIL", "ADMIN_PASSWORD_FILE"} if name == "migrate" else set()), (name, extra)
    assert shared["FACEAPI_ENV"] == "production"
    assert shared["HOST"] == "0.0.0.0"


def test_secrets_come_from_files_never_from_the_environment():
    """Every secret setting is NAME_FILE=/run/secrets/name with that secret mounted, defined by a
    file; no secret value is in any environment, and ADMIN_PASSWORD reaches only `migrate`."""
    compose = load_compose()
    services, secrets = compose["services"], compose["secrets"]
    for name, secret in secrets.items():
        assert set(secret) == {"file"} and secret["file"] == f"./secrets/{name}", name
    for name in APP_SERVICES:
        environment = environment_of(services[name])
        assert not SECRET_SETTINGS & set(environment), f"{name}: secret values in the environment"
        for key, value in environment.items():
            if key.endswith("_FILE"):
                secret = value.removeprefix("/run/secrets/")
                assert value == f"/run/secrets/{secret}" and secret in services[name]["secrets"], (name, key)
                assert secret in secrets
        needed = {"DATABASE_URL", "REDIS_URL", "JWT_SECRET_KEY"}
        assert {f"{key}_FILE" for key in needed} <= set(environment), name
    holders = {name for name, service in services.items() if "admin_password" in (service.get("secrets") or [])}
    assert holders == {"migrate"}
    assert environment_of(services["migrate"])["ADMIN_PASSWORD_FILE"] == "/run/secrets/admin_password"
    # Nothing in any compose file spells out a password.
    for path in (COMPOSE_FILE, WORKERS_COMPOSE, SHARED_SERVICES_COMPOSE):
        assert not re.search(r"(?i)(password|secret)[^\n]*[:=]\s*['\"]?[A-Za-z0-9]{12,}", path.read_text()), path


def test_every_service_rotates_its_logs_and_has_resource_limits():
    services = load_compose()["services"]
    for name, service in services.items():
        logging = service.get("logging") or {}
        assert logging.get("driver") == "json-file" and {"max-size", "max-file"} <= set(logging.get("options", {})), (
            f"{name}: logs must rotate"
        )
        limits = ((service.get("deploy") or {}).get("resources") or {}).get("limits") or {}
        assert {"cpus", "memory"} <= set(limits), f"{name}: no resource limits"


def test_app_containers_are_locked_down():
    services = load_compose()["services"]
    for name in APP_SERVICES:
        service = services[name]
        assert service.get("read_only") is True, name
        assert "ALL" in service.get("cap_drop", []), name
        # DATA_DIR writable: a tmpfs of the containers' uid, or (Flower's history) a named volume,
        # which takes the image's owner of /var/lib/faceapi (uid 10001) when it is first created.
        data_tmpfs = any("/var/lib/faceapi" in mount and "uid=10001" in mount for mount in service.get("tmpfs", []))
        data_volume = any(str(mount).endswith(":/var/lib/faceapi") for mount in service.get("volumes", []))
        assert data_tmpfs or (data_volume and name == "flower"), name


def test_healthchecks_use_readiness_where_http_is_served():
    services = load_compose()["services"]
    assert "/readyz" in json.dumps(services["web"]["healthcheck"]["test"])
    assert "stack.probe" in json.dumps(services["worker"]["healthcheck"]["test"])
    assert "/healthcheck" in json.dumps(services["flower"]["healthcheck"]["test"])


# The workers' liveness checks (stack/probe.py): manifest -> the role it probes.
WORKER_PROBES = {
    "kubernetes/worker.yaml": "worker",
    "kubernetes-gpu/worker-gpu.yaml": "worker",
    "kubernetes/webhooks.yaml": "webhooks",
}


def liveness_probe(manifest: str) -> dict:
    (deployment,) = [
        d for d in yaml.safe_load_all((ROOT / "deploy" / manifest).read_text()) if d["kind"] == "Deployment"
    ]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container["livenessProbe"]


def compose_seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)s", value)
    assert match, f"{value}: give compose durations in seconds"
    return float(match.group(1))


def test_worker_liveness_is_make_runs_watchdog_rule_at_its_pace():
    """Kubernetes and compose check the workers with stack.probe (the supervisor's rule, stall
    included), as often and as many times in a row as the supervisor, and let it finish."""
    from config import Settings
    from stack.probe import DEADLINE_SECONDS

    settings = Settings()
    for manifest, role in WORKER_PROBES.items():
        probe = liveness_probe(manifest)
        assert probe["exec"]["command"] == ["python", "-m", "stack.probe", role], manifest
        assert probe["periodSeconds"] == settings.worker_liveness_interval, manifest
        assert probe["failureThreshold"] == settings.worker_liveness_failures, manifest
        assert probe["timeoutSeconds"] >= DEADLINE_SECONDS + 5, manifest  # + python's start in a busy pod
    for compose in (load_compose(), yaml.safe_load(WORKERS_COMPOSE.read_text())):
        for role in {"worker", "webhooks"} & set(compose["services"]):
            check = compose["services"][role]["healthcheck"]
            assert check["test"] == ["CMD", "python", "-m", "stack.probe", role], role
            assert compose_seconds(check["interval"]) == settings.worker_liveness_interval, role
            assert check["retries"] == settings.worker_liveness_failures, role
            assert compose_seconds(check["timeout"]) >= DEADLINE_SECONDS + 5, role


def test_the_probe_passes_an_outage_within_its_deadline():
    """With the broker and the database unreachable (CONTAINER_ENV's port 9), the probe answers 0
    (an outage is not the worker's fault) long before a probe's timeout, without the models."""
    from stack.probe import DEADLINE_SECONDS

    code = (
        "import runpy, sys; sys.argv = ['probe', 'worker']\n"
        "try:\n    runpy.run_module('stack.probe', run_name='__main__')\n"
        f"finally:\n    assert not set({HEAVY_MODULES!r}) & set(sys.modules), 'the probe loads a model'"
    )
    started = time.monotonic()
    result = run_python(code)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broker does not answer" in result.stdout and "no restart" in result.stdout
    assert time.monotonic() - started < DEADLINE_SECONDS


def test_the_probe_gives_up_on_a_broker_that_hangs_within_its_deadline():
    """A broker that accepts the connection and never answers (a socket nobody reads) is an
    outage too: the probe answers 0 at its deadline, before the orchestrator's timeout."""
    code = "import runpy, sys; sys.argv = ['probe', 'worker', '--deadline', '2']\n"
    code += "runpy.run_module('stack.probe', run_name='__main__')"
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        started = time.monotonic()
        result = run_python(code, {"REDIS_URL": f"redis://127.0.0.1:{silent.getsockname()[1]}/0"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no answer from the broker or the database in 2 s" in result.stdout
    assert time.monotonic() - started < 15


def test_env_example_covers_the_variables_the_compose_files_read():
    example = dict(
        line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if line and not line.startswith("#")
    )
    used: set[str] = set()
    for path in (COMPOSE_FILE, WORKERS_COMPOSE, SHARED_SERVICES_COMPOSE):
        used |= {match.group("name") for match in _INTERPOLATION.finditer(path.read_text())}
    used -= {"SECRETS_DIR", "FLOWER_PUBLISH"} - set(example)  # optional, with defaults
    missing = used - set(example)
    assert not missing, f".env.example does not mention {sorted(missing)}"
    assert not SECRET_SETTINGS & set(example), ".env.example must not carry secrets"
    assert example["PROXY_HOPS"] == "1"  # the proxy profile's Caddy is one hop


def test_worker_only_compose_for_other_hosts():
    compose = yaml.safe_load(WORKERS_COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"worker"}, "workers only: no beat (exactly one, on the main host), no web"
    worker = services["worker"]
    assert role_of(worker) == "worker"
    assert re.fullmatch(r"\$\{FACEAPI_IMAGE:\?[^}]+\}", worker["image"])
    environment = environment_of(worker)
    assert environment["DATABASE_URL_FILE"] == "/run/secrets/database_url"
    assert environment["REDIS_URL_FILE"] == "/run/secrets/redis_url"
    assert not SECRET_SETTINGS & set(environment)
    assert set(worker["secrets"]) == {"database_url", "redis_url"} == set(compose["secrets"])
    main_worker = load_compose()["services"]["worker"]
    assert worker["stop_grace_period"] == main_worker["stop_grace_period"]
    assert worker["healthcheck"]["test"] == main_worker["healthcheck"]["test"]
    unknown = set(environment) - config_env_names()
    assert not unknown, unknown

    shared = yaml.safe_load(SHARED_SERVICES_COMPOSE.read_text())["services"]
    assert set(shared) == {"db", "redis"}
    for name, port in (("db", "5432"), ("redis", "6379")):
        (published,) = shared[name]["ports"]
        assert published.startswith("${PRIVATE_ADDRESS:?") and published.endswith(f":{port}:{port}"), published


def test_reverse_proxy_example():
    """Caddy with automatic TLS in front of web: the body-size limit lets the largest request (a batch
    of MAX_BATCH_BYTES) reach the app, long-polls outlive 30 s, and compose wires it as a profile."""
    from config import Settings

    text = CADDYFILE.read_text()
    assert re.search(r"^\{\$FACEAPI_DOMAIN\} \{", text, flags=re.M), "a site named by its domain: automatic HTTPS"
    assert "reverse_proxy web:8000" in text
    size = re.search(r"max_size (\d+)MiB", text)
    assert size and int(size.group(1)) * 1024 * 1024 > Settings().max_batch_bytes
    assert re.search(r"read_timeout (\d+)s", text) and int(re.search(r"read_timeout (\d+)s", text).group(1)) > 30
    proxy = load_compose()["services"]["proxy"]
    assert proxy["profiles"] == ["proxy"] and interpolate(proxy["image"]).startswith("caddy:2")
    assert "./deploy/caddy/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    assert environment_of(load_compose()["services"]["web"])["PROXY_HOPS"] == "${PROXY_HOPS:-0}"


def test_reverse_proxy_cuts_slow_clients_and_buffers_requests():
    """Production runs behind the proxy because gunicorn has no header timeout and reads a request on
    one of its threads (tests/api/test_request_capacity.py): Caddy times out slow headers and bodies and
    passes every single-photo submission on whole."""
    from config import Settings

    text = CADDYFILE.read_text()
    seconds = {"s": 1, "m": 60}
    timeouts = {
        name: int(value) * seconds[unit]
        for name, value, unit in re.findall(r"^\s*(read_header|read_body) (\d+)([sm])$", text, flags=re.M)
    }
    assert re.search(r"servers \{\s*timeouts \{", text), "the timeouts are the servers' global option"
    assert 0 < timeouts["read_header"] <= 30
    assert timeouts["read_body"] > 30, "longer than a long-poll: Go's read deadline spans the whole request"
    buffered = re.search(r"request_buffers (\d+)MiB", text)
    assert buffered and int(buffered.group(1)) * 1024 * 1024 > Settings().max_upload_bytes


def test_make_secrets_writes_every_secret_the_compose_files_mount(tmp_path):
    compose_secrets = set(load_compose()["secrets"])
    target = tmp_path / "secrets"
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)}
    completed = subprocess.run(
        ["bash", str(MAKE_SECRETS), str(target)], env=env, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    written = {path.name for path in target.iterdir()}
    assert written == compose_secrets | {"redis_address"}  # redis_address: KEDA's, on Kubernetes
    values = {name: (target / name).read_text() for name in written}
    assert values["database_url"] == f"postgresql://faceapi:{values['postgres_password']}@db:5432/faceapi"
    assert values["redis_url"] == f"redis://:{values['redis_password']}@redis:6379/0"
    assert len(values["jwt_secret_key"]) >= 32
    assert all(not value.endswith("\n") for value in values.values())
    again = subprocess.run(["bash", str(MAKE_SECRETS), str(target)], env=env, capture_output=True, text=True)
    assert again.returncode == 0 and {name: (target / name).read_text() for name in written} == values  # kept


def test_app_environment_is_spelled_the_way_config_reads_it():
    config_names = config_env_names()
    assert {"DATABASE_URL", "REDIS_URL", "JWT_SECRET_KEY", "FACEAPI_ENV", "WORKER_CONCURRENCY"} <= config_names
    services = load_compose()["services"]
    for name in APP_SERVICES:
        unknown = set(environment_of(services[name])) - config_names - NON_SETTING_ENV
        assert not unknown, f"{name}: {sorted(unknown)} are not read by config/__init__.py"

    dockerfile_env: set[str] = set()
    for keyword, arguments in dockerfile_instructions():
        if keyword == "ENV":
            dockerfile_env |= set(re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", arguments))
    unknown = dockerfile_env - config_names - NON_SETTING_ENV
    assert not unknown, f"Dockerfile ENV {sorted(unknown)} are not read by config/__init__.py"


def test_every_app_service_runs_a_role_of_the_image():
    """No command line is copied into compose: each service names its role, and the options come
    from the settings (WORKER_CONCURRENCY, WEB_WORKERS, ...) through the one definition."""
    services = load_compose()["services"]
    assert {name: role_of(services[name]) for name in APP_SERVICES} == ROLES
    for name in APP_SERVICES:
        assert "entrypoint" not in services[name], f"{name} must keep the image's entrypoint"


def test_the_definitions_resolve_in_a_container():
    """gunicorn.conf.py through gunicorn's own parser, and the Celery configuration, under the
    image's environment: threads for long-polls, settings-driven sizes, files under DATA_DIR."""
    result = resolved()
    web = result["gunicorn"]
    assert web["app"] == GUNICORN_APP
    assert web["bind"] == ["0.0.0.0:8000"]
    assert web["worker_class"] == "web.gunicorn_worker.JsonErrorThreadWorker"  # gthread, with JSON error pages
    assert web["threads"] >= 4  # long-polls do not hold a process
    assert web["workers"] == 2 and web["graceful_timeout"] >= 20
    assert web["control_socket"] == "/var/lib/faceapi/gunicorn.ctl"
    celery = result["celery"]
    assert celery["concurrency"] == 3  # WORKER_CONCURRENCY, which also sizes onnxruntime's threads
    assert celery["pool"] == "prefork" and celery["acks_late"]
    assert celery["schedule"] == "/var/lib/faceapi/celerybeat-schedule"

    other = resolved({"WEB_WORKERS": "5", "PORT": "9000", "WORKER_CONCURRENCY": "1"})
    assert other["gunicorn"]["workers"] == 5 and other["gunicorn"]["bind"] == ["0.0.0.0:9000"]
    assert other["celery"]["concurrency"] == 1


def test_every_role_resolves_to_something_runnable():
    roles = resolved()["roles"]
    assert set(roles) == {"web", "worker", "webhooks", "beat", "flower", "migrate", "backup"}
    modules = {argv[2] for argv in roles.values()}
    assert roles["web"][2:4] == ["gunicorn", "--config"] and roles["web"][4].endswith("gunicorn.conf.py")
    assert roles["migrate"][2:] == ["stack.cli", "migrate"]
    assert roles["backup"][2:] == ["stack.backup", "dump"]
    worker = roles["worker"]
    assert worker[2:6] == ["celery", "-A", "workers.celery_app", "worker"]
    assert "%h" in option_value(worker, "--hostname"), "each scaled worker needs its own node name"
    # Jobs and webhook deliveries in workers of their own: a slow receiver never holds a job worker.
    assert option_value(worker, "--queues") == "faceapi"
    assert option_value(roles["webhooks"], "--queues") == "webhooks"
    assert option_value(roles["webhooks"], "--pool") == "threads"
    assert option_value(roles["flower"], "--port") == "5555" and option_value(roles["flower"], "--address") == "0.0.0.0"
    subcommands = {argv[5] for argv in roles.values() if argv[2] == "celery"}
    code = f"""
import importlib.util, json
from celery.bin.celery import celery as cli
missing = [m for m in {sorted(modules | {"workers.celery_app"})!r} if importlib.util.find_spec(m) is None]
print(json.dumps({{"missing": missing, "subcommands": sorted(cli.commands)}}))
"""
    completed = run_python(code)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert not result["missing"], f"not importable: {result['missing']}"
    assert subcommands <= set(result["subcommands"]), subcommands
    source = (ROOT / "stack" / "cli.py").read_text()
    assert 'add_parser("migrate"' in source


def test_worker_can_be_scaled():
    worker = load_compose()["services"]["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert environment_of(worker).get("CELERY_TASK_EVENTS", "1") != "0"  # Flower shows tasks


@pytest.mark.parametrize(("value", "expected"), [(None, True), ("1", True), ("0", False)])
def test_task_events_for_flower_follow_the_setting(value, expected):
    """In a subprocess: importing workers.celery_app here would build this process's Celery app
    before the tests' services (and their REDIS_URL) exist."""
    code = """
import json
from workers.celery_app import make_celery
conf = make_celery().conf
print(json.dumps([conf.worker_send_task_events, conf.task_send_sent_event]))
"""
    completed = run_python(code, {} if value is None else {"CELERY_TASK_EVENTS": value})
    assert completed.returncode == 0, completed.stderr
    # The web never sends `task-sent` (jobqueue.make_app): Flower shows tasks from their receipt.
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == [expected, False]


def test_make_run_starts_the_same_definitions():
    from stack import serve
    from stack.run import process_commands, worker_command

    roles = ("web", "worker", "webhooks", "beat", "flower")
    assert process_commands() == {role: serve.command(role) for role in roles}
    words = worker_command(1, "test@%h", "--without-gossip")
    assert words[: len(serve.command("worker"))] == serve.command("worker")
    assert option_value(words[len(serve.command("worker")) :], "--hostname") == "test@%h"  # a later option wins


def test_serve_runs_other_commands_as_given(monkeypatch, capsys):
    from stack import serve

    executed = []
    monkeypatch.setattr(serve.os, "execvp", lambda program, argv: executed.append(argv))
    serve.main(["python", "-m", "stack.cli", "create-admin", "a@example.com"])
    serve.main(["worker", "--concurrency", "4"])
    serve.main([])
    assert executed[0] == ["python", "-m", "stack.cli", "create-admin", "a@example.com"]
    assert executed[1] == serve.command("worker", "--concurrency", "4")
    assert executed[2] == serve.command("web")
    serve.main(["--help"])
    assert "migrate" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown role"):
        serve.command("nonsense")


def test_service_dependencies():
    services = load_compose()["services"]

    def conditions(name: str) -> dict[str, str]:
        depends = services[name].get("depends_on") or {}
        if isinstance(depends, list):
            return dict.fromkeys(depends, "service_started")
        return {key: (value or {}).get("condition", "service_started") for key, value in depends.items()}

    assert conditions("migrate").get("db") == "service_healthy"
    assert services["migrate"].get("restart", "no") == "no"
    for name in ("web", "worker"):
        assert conditions(name).get("migrate") == "service_completed_successfully"
        assert conditions(name).get("redis") == "service_healthy"
    assert conditions("flower").get("redis") == "service_healthy"


def test_published_ports():
    services = load_compose()["services"]

    def container_ports(name: str) -> set[str]:
        return {interpolate(str(port)).rsplit(":", 1)[-1] for port in services[name].get("ports", [])}

    assert container_ports("web") == {"8000"}
    assert container_ports("flower") == {"5555"}


def test_the_image_healthcheck_is_replaced_where_nothing_serves_http():
    """The Dockerfile's HEALTHCHECK probes gunicorn; the other app containers need their own or none."""
    services = load_compose()["services"]
    for name in ("migrate", "worker", "beat", "flower"):
        healthcheck = services[name].get("healthcheck")
        assert healthcheck, f"{name} would inherit the web HEALTHCHECK and be reported unhealthy"
        assert healthcheck.get("disable") or "8000" not in json.dumps(healthcheck.get("test"))


def test_compose_variables_used_by_app_services_have_defaults_or_errors():
    """Every `${VAR}` either has a default or stops compose with a message, except the pass-throughs."""
    text = COMPOSE_FILE.read_text()
    bare = {match.group("name") for match in _INTERPOLATION.finditer(text) if match.group("op") is None}
    assert not bare, f"{sorted(bare)} silently become empty when unset: give them a default or `:?`"


def test_gunicorn_app_factory_builds_without_the_models():
    """`web:create_app()` imports, is callable and builds the app in production without loading a model."""
    module, _, call = GUNICORN_APP.partition(":")
    attribute = call.removesuffix("()")
    code = f"""
import json, sys
import {module}
factory = getattr({module}, {attribute!r}, None)
assert callable(factory), "{module}.{attribute} is not callable"
app = factory()
heavy = sorted(name for name in sys.modules if name.split(".")[0] in {HEAVY_MODULES!r})
rules = sorted(rule.rule for rule in app.url_map.iter_rules())
print(json.dumps({{"heavy": heavy, "rules": rules, "commands": sorted(app.cli.commands)}}))
"""
    completed = run_python(code)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert not result["heavy"], f"the web process imports {result['heavy']}"
    assert "/healthz" in result["rules"]
    assert "db" in result["commands"]  # Flask-Migrate: `flask --app web:create_app db upgrade`


# ---------------------------------------------------------------- Dockerfile and .dockerignore


def final_instruction(keyword: str) -> str | None:
    found = [arguments for name, arguments in final_stage(dockerfile_instructions()) if name == keyword]
    return found[-1] if found else None


def test_dockerfile_base_image_and_install():
    instructions = dockerfile_instructions()
    arguments_before = dict(
        re.fullmatch(r"(\w+)=(\S+)", arguments).groups()
        for keyword, arguments in instructions[: [k for k, _ in instructions].index("FROM")]
        if keyword == "ARG" and "=" in arguments
    )
    bases = [arguments.split()[0] for keyword, arguments in instructions if keyword == "FROM"]
    bases = [re.sub(r"\$\{(\w+)\}", lambda m: arguments_before[m.group(1)], base) for base in bases]
    assert len(bases) >= 2, "multi-stage: the compiler stays in the build stage"
    assert all(base.startswith("python:3.11-slim") for base in bases)
    final = " ".join(arguments for keyword, arguments in final_stage(instructions) if keyword == "RUN")
    assert "build-essential" not in final and "apt-get install" not in final
    runs = " ".join(arguments for keyword, arguments in instructions if keyword == "RUN")
    assert re.search(r"pip install[^&;]*-r \S*requirements\.txt", runs)
    assert "requirements-dev" not in runs and "requirements-bench" not in runs, "the image installs the runtime only"


def test_dockerfile_copies_files_that_exist_and_are_not_ignored():
    patterns = dockerignore_patterns()
    copied = []
    for keyword, arguments in dockerfile_instructions():
        if keyword not in ("COPY", "ADD"):
            continue
        words = exec_form_or_words(arguments)
        flags = [word for word in words if word.startswith("--")]
        if any(flag.startswith("--from") for flag in flags):
            continue  # from another build stage
        sources = [word for word in words if not word.startswith("--")][:-1]
        assert sources, f"{keyword} {arguments} has no source"
        for source in sources:
            assert not re.match(r"^[a-z]+://", source), f"{keyword} from a URL: {source}"
            matches = list(ROOT.glob(source)) if any(c in source for c in "*?[") else [ROOT / source]
            assert matches and all(path.exists() for path in matches), f"{keyword} source {source} does not exist"
            assert not ignored_by_dockerignore(source, patterns), f".dockerignore excludes {source}"
            copied.append(source)
    assert "requirements.txt" in copied or any("requirements" in source for source in copied)
    for package in ("config", "domain", "jobqueue", "web", "workers", "stack", "migrations", "gunicorn.conf.py"):
        assert any(source.rstrip("/") == package or source == "." for source in copied), f"{package} is not copied"


def test_dockerignore_keeps_local_state_out_of_the_build_context():
    patterns = dockerignore_patterns()
    for path in (".venv", ".data", ".git"):
        assert ignored_by_dockerignore(path, patterns), f"{path} would be sent to the Docker daemon"


def test_dockerfile_runs_as_a_non_root_user():
    user = final_instruction("USER")
    assert user, "the final stage has no USER"
    assert user.split()[0].split(":")[0] not in ("root", "0")


def test_dockerfile_entrypoint_runs_the_roles_and_serves_by_default():
    entrypoint, command = final_instruction("ENTRYPOINT"), final_instruction("CMD")
    assert entrypoint and command
    assert entrypoint.startswith("[") and command.startswith("["), "exec form, so the process gets the signals"
    assert json.loads(entrypoint) == ENTRYPOINT
    assert json.loads(command) == ["web"]


def test_dockerfile_healthcheck_uses_python():
    check = final_instruction("HEALTHCHECK")
    assert check, "no HEALTHCHECK"
    assert re.search(r"/(healthz|readyz)", check)
    assert re.search(r"\bCMD\s+(\[\s*\"python|python)", check)
    assert "curl" not in check and "wget" not in check


def test_the_image_checks_its_models_at_build_as_its_user():
    stage = final_stage(dockerfile_instructions())
    user_at = max(index for index, (keyword, _) in enumerate(stage) if keyword == "USER")
    checks = [index for index, (keyword, args) in enumerate(stage) if keyword == "RUN" and "stack.check_models" in args]
    assert checks and checks[-1] > user_at, "the model check runs in the final stage, as the unprivileged user"
    assert final_instruction("USER").split(":")[0] == "10001"  # Kubernetes' runAsUser, compose's secret owner


def test_the_healthcheck_command_is_valid_python():
    check = final_instruction("HEALTHCHECK")
    command = json.loads(check[check.index("CMD") + 3 :].strip())
    assert command[:2] == ["python", "-c"] and "/readyz" in command[2]
    compile(command[2], "HEALTHCHECK", "exec")


def test_model_check_passes_and_refuses_an_altered_pack(tmp_path):
    """`python -m stack.check_models`, the build step: the bundled pack passes; a pack whose file
    does not match its SHA256SUMS fails with the reason."""
    passed = run_python("from stack.check_models import main; raise SystemExit(main())")
    assert passed.returncode == 0, passed.stderr[-2000:]
    result = json.loads(passed.stdout.strip().splitlines()[-1])
    assert result["model"] == "w600k_mbf" and result["faces"] == 6

    from workers.engine import BUNDLED_FILES, bundled_pack_dir

    for name in BUNDLED_FILES:
        data = (bundled_pack_dir() / name).read_bytes()
        (tmp_path / name).write_bytes(data[:-1] + bytes([data[-1] ^ 1]) if name.startswith("w600k") else data)
    (tmp_path / "SHA256SUMS").write_text("".join(f"{d}  {n}\n" for n, d in BUNDLED_FILES.items()))
    failed = run_python(
        "from stack.check_models import main; raise SystemExit(main())", {"MODEL_PACK_DIR": str(tmp_path)}
    )
    assert failed.returncode == 1
    assert "does not match its pinned sha256" in failed.stderr


# ---------------------------------------------------------------- external linters, when installed


def test_hadolint_when_available():
    hadolint = shutil.which("hadolint")
    if not hadolint:
        pytest.skip("hadolint is not installed")
    completed = subprocess.run(
        [hadolint, "--failure-threshold", "error", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def compose_cli() -> list[str] | None:
    """`docker compose` (v2), else Debian's docker-compose (v1.29): the two make test-image accepts."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_config_when_available():
    compose = compose_cli()
    if not compose:
        pytest.skip("neither the docker compose plugin nor docker-compose is installed")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp"}
    env |= {"ADMIN_EMAIL": "admin@example.com"}
    completed = subprocess.run(
        [*compose, "-f", str(COMPOSE_FILE), "config", "--quiet"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
