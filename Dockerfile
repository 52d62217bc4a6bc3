# The production image: one image for every process of the service. `web` (the default), `worker`,
# `webhooks`, `beat`, `flower`, `migrate` and `backup` are commands of stack/serve.py, the entrypoint:
#
#   deploy/build-image.sh faceapi:1                             # BuildKit, the host's CA bundle; time and size
#   docker run --rm faceapi:1 worker                            # docker-compose.yml / deploy/kubernetes pick the role
#   deploy/build-image.sh faceapi:1-gpu --build-arg ORT_PACKAGE="onnxruntime-gpu[cuda,cudnn]==1.31.1"   # GPU workers
#
# It needs BuildKit (`RUN --mount`): Docker 23+ builds with it, Docker 20.10 with DOCKER_BUILDKIT=1.
# No `# syntax=` line: that would pull the Dockerfile frontend from Docker Hub, which an offline or
# mirrored builder cannot reach; the builder's own frontend reads this file.
# Behind a TLS-inspecting proxy or with a private index, pip gets the CA bundle as a build secret
# (never a layer): --secret id=pip_cert,src=/etc/ssl/certs/ca-certificates.crt, and
# --build-arg PIP_INDEX=https://... (deploy/build-image.sh passes the host's).
# PYTHON_IMAGE: any Debian-based image with Python 3.11 and venv: the official python:3.11-slim
# or one made from Debian's packages (deploy/image-test/make-base.sh: what `make test-image` uses).
#
# Runtime requirements only (requirements.txt), no compiler, a fixed non-root uid, and the face
# models checked at build: a missing or altered model file fails the build, not the first job.
# The models are licensed for non-commercial research use only (README, "Models and their licence").

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the virtualenv (insightface's Cython extension needs g++; nothing of this stage ships) ---
FROM ${PYTHON_IMAGE} AS build

# Another onnxruntime build instead of the CPU one, e.g. "onnxruntime-gpu[cuda,cudnn]==1.31.1".
ARG ORT_PACKAGE=""
# A package index other than PyPI (a mirror, a proxy); empty: pip's default.
ARG PIP_INDEX=""

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Python's headers come with the official images; Debian's python3 needs python3-dev for them.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && python3 -c "import sysconfig, pathlib, sys; sys.exit(not pathlib.Path(sysconfig.get_paths()['include'], 'Python.h').exists())" \
       || apt-get install -y --no-install-recommends python3-dev \
    && rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

COPY requirements.txt /tmp/requirements.txt
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
    && if [ -n "$PIP_INDEX" ]; then export PIP_INDEX_URL="$PIP_INDEX"; fi \
    && pip install --upgrade pip \
    && pip install -r /tmp/requirements.txt \
    && if [ -n "$ORT_PACKAGE" ]; then pip uninstall -y onnxruntime && pip install "$ORT_PACKAGE"; fi

# What the service never imports goes (stack/image_prune.py says what and why; docs/DEPLOYMENT.md
# has the sizes), then everything is compiled once: the root filesystem is read-only at run time.
COPY stack/image_prune.py /tmp/image_prune.py
RUN python /tmp/image_prune.py /opt/venv \
    && find /opt/venv -depth -name '__pycache__' -type d -exec rm -rf {} + \
    && python -m compileall -q -j 0 /opt/venv/lib

# --- runtime: the virtualenv and the application ---
FROM ${PYTHON_IMAGE} AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FACEAPI_ENV=production \
    DATA_DIR=/var/lib/faceapi \
    HOST=0.0.0.0 \
    PORT=8000 \
    MPLCONFIGDIR=/tmp/matplotlib \
    # albumentations (imported through insightface) would ask PyPI for a newer version at each start.
    NO_ALBUMENTATIONS_UPDATE=1

# A fixed, unprivileged uid (10001: Kubernetes' runAsUser, the owner of compose's secret files) with
# DATA_DIR writable (gunicorn's control socket, beat's schedule); everything else read-only to it.
RUN groupadd --system --gid 10001 faceapi \
    && useradd --system --uid 10001 --gid faceapi --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin faceapi \
    && install -d -o faceapi -g faceapi -m 0750 /var/lib/faceapi

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
COPY requirements.txt gunicorn.conf.py ./
COPY config ./config
COPY domain ./domain
COPY jobqueue ./jobqueue
COPY migrations ./migrations
COPY stack ./stack
COPY web ./web
COPY workers ./workers
RUN python -m compileall -q /app

USER 10001:10001

# The models as a worker loads them: pinned sha256, onnxruntime sessions, six faces found and
# embedded in insightface's sample photo. Needs neither PostgreSQL nor Redis. Then the backup
# role's pg_dump and pg_restore (pgserver's, which the venv's trim keeps) must be there.
RUN python -m stack.check_models \
    && python -c "from stack.backup import pg_binary; print(pg_binary('pg_dump'), pg_binary('pg_restore'))"

EXPOSE 8000 5555

# Readiness of the web role (PostgreSQL reachable with the current schema, Redis reachable); the
# other roles replace it (docker-compose.yml, deploy/kubernetes). python: the slim image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8000')}/readyz\", timeout=4)"]

ENTRYPOINT ["python", "-m", "stack.serve"]
CMD ["web"]
