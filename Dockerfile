# syntax=docker/dockerfile:1
# One image for every process of the service: `web` (the default), `worker`, `beat`, `flower` and
# `migrate` are commands of stack/serve.py, the entrypoint (docker-compose.yml picks one per
# service). Build: `docker build -t faceapi .`

# --- build: compile the wheels that have none for Linux (insightface's Cython extension needs g++) ---
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

COPY requirements.txt /tmp/requirements.txt
RUN pip install --upgrade pip \
    && pip install -r /tmp/requirements.txt

# --- runtime: the virtualenv and the application, no compiler ---
FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FACEAPI_ENV=production \
    DATA_DIR=/var/lib/faceapi \
    HOST=0.0.0.0 \
    PORT=8000

# A fixed, unprivileged uid with a writable home (matplotlib's cache) and DATA_DIR (gunicorn's
# control socket, beat's schedule).
RUN groupadd --system --gid 10001 faceapi \
    && useradd --system --uid 10001 --gid faceapi --create-home --home-dir /home/faceapi \
       --shell /usr/sbin/nologin faceapi \
    && install -d -o faceapi -g faceapi /var/lib/faceapi

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
COPY requirements.txt gunicorn.conf.py ./
COPY config ./config
COPY domain ./domain
COPY migrations ./migrations
COPY stack ./stack
COPY web ./web
COPY workers ./workers

USER faceapi

EXPOSE 8000

# Liveness only (/healthz touches neither PostgreSQL nor Redis); python, because the slim image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"

ENTRYPOINT ["python", "-m", "stack.serve"]
CMD ["web"]
