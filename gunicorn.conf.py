"""gunicorn's settings for the web process, the only place they are written down.

`python -m stack.serve web` runs `gunicorn --config gunicorn.conf.py` for `make run`, the image,
docker-compose and Kubernetes alike; the values that vary come from the service's settings
(config/__init__.py: HOST, PORT, WEB_WORKERS, DATA_DIR).
"""

import os

from config import get_settings

UNIX_SOCKET_PATH_MAX = 107  # bytes in sun_path on Linux, less the terminating NUL

_settings = get_settings()

wsgi_app = "web:create_app()"
bind = [f"{_settings.host}:{_settings.port}"]
workers = _settings.web_workers
# Threads, so that long-polls (GET /jobs/{id}?wait=N, at most 30 s) do not hold a whole process;
# at most WAIT_MAX_PER_PROCESS of them wait at once (web/waiting.py). gthread reads a request's
# headers on a thread, so a client sending them slowly holds one until they are complete (gunicorn
# has no header timeout): 32 threads leave room for a few slow clients and the probes, and
# production puts a buffering proxy in front (deploy/caddy, deploy/kubernetes/ingress.yaml) that
# passes on whole requests only. Threads beyond the process's database connections (2 x
# DB_POOL_SIZE) queue for one when all query at once; /healthz needs none.
# gthread, whose own error pages (400, 414, 431: requests that never reach Flask) are the API's
# JSON error instead of HTML (web/gunicorn_worker.py).
worker_class = "web.gunicorn_worker.JsonErrorThreadWorker"
threads = 32
# A gthread worker that does not report to the master for this long is killed and replaced (a
# request itself may take longer: requests run on the threads).
timeout = 30
# SIGTERM: requests in flight (a long-poll ends within 30 s) get this long before the workers go.
graceful_timeout = 20
# The workers' heartbeat files: in memory, since a container's disk can stall on a busy host.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None

# The control socket (`gunicornc -s PATH`) in this instance's DATA_DIR. gunicorn's default,
# ~/.gunicorn/gunicorn.ctl, is one per user: a second instance on the host took it over and removed
# it when it stopped. Off where DATA_DIR's path is too long for a Unix socket, or not writable.
control_socket = str(_settings.data_dir.resolve() / "gunicorn.ctl")
try:
    _settings.data_dir.mkdir(parents=True, exist_ok=True)
    control_socket_disable = len(os.fsencode(control_socket)) > UNIX_SOCKET_PATH_MAX or not os.access(
        _settings.data_dir, os.W_OK
    )
except OSError:
    control_socket_disable = True
