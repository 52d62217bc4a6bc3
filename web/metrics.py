"""Prometheus metrics at /metrics, read from the database and Redis at scrape time.

Reading the state at scrape time (instead of counting in each process) gives the same
numbers whichever gunicorn worker (or web replica) answers, with no multiprocess bookkeeping.
The duration histogram and the failure counts cover the finished jobs still retained in the
database (JOB_RETENTION_DAYS).

What to alert on (deploy/monitoring/alerts.yml): jobs waiting (`faceapi_oldest_queued_job_age_seconds`),
no worker answering (`faceapi_workers_online`), a growing queue, jobs failing for the service's
reasons (`faceapi_failed_jobs{code="internal_error"|"timeout"}`), webhooks not delivered. A job
that ends `failed` for the photo's reasons (no_face, ...) is a Celery task that succeeded:
Flower shows workers and tasks, these show jobs.

With METRICS_TOKEN set, a scrape needs `Authorization: Bearer <token>` (Prometheus:
`authorization: {credentials_file: ...}`); outside development /metrics answers 403 until it is
set. Keep /metrics off the public side anyway (the Ingress and Caddy examples do not route it).
"""

from __future__ import annotations

import hmac
import logging
import threading
import time

from flask import Blueprint, Response, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select, true

import jobqueue
from domain.db import new_session
from domain.models import Job, JobStatus
from domain.notifications import redis_client
from jobqueue import WEBHOOK_QUEUE
from web.errors import error_response
from web.settings import app_settings

bp = Blueprint("metrics", __name__)
log = logging.getLogger(__name__)
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# Workers are counted with a broadcast ping through the broker, at most this often per process.
WORKERS_PING_SECONDS = 1.0
WORKERS_CACHE_SECONDS = 10.0


class WorkersOnline:
    """How many Celery worker nodes answer a ping, remembered for WORKERS_CACHE_SECONDS."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.at, self.nodes = -WORKERS_CACHE_SECONDS, None

    def __call__(self) -> int | None:
        with self.lock:
            if time.monotonic() - self.at >= WORKERS_CACHE_SECONDS:
                try:
                    replies = jobqueue.app().control.ping(timeout=WORKERS_PING_SECONDS)
                    self.nodes = len(replies or [])
                except Exception:  # noqa: BLE001 - the broker is down: unknown, not zero
                    log.warning("metrics: the workers could not be pinged")
                    self.nodes = None
                self.at = time.monotonic()
            return self.nodes


workers_online = WorkersOnline()


class ServiceCollector(Collector):
    def collect(self):
        with new_session() as session:
            counts = session.execute(select(Job.type, Job.status, func.count()).group_by(Job.type, Job.status)).all()
            durations = session.execute(
                select(Job.type, func.extract("epoch", Job.finished_at - Job.started_at)).where(
                    Job.status == JobStatus.succeeded, Job.started_at.is_not(None)
                )
            ).all()
            code = Job.error.op("->>")("code")
            failures = session.execute(
                select(code, func.count()).where(Job.status == JobStatus.failed).group_by(code)
            ).all()
            queued_since = func.min(Job.created_at).filter(Job.status == JobStatus.queued)
            running_since = func.min(Job.started_at).filter(Job.status == JobStatus.running)
            ages = [func.extract("epoch", func.now() - since) for since in (queued_since, running_since)]
            oldest_queued, oldest_running = session.execute(select(*ages)).one()
        jobs = GaugeMetricFamily("faceapi_jobs", "Jobs in the database by type and status", labels=["type", "status"])
        for job_type, status, count in counts:
            jobs.add_metric([job_type.value, status.value], count)
        yield jobs
        failed = GaugeMetricFamily(
            "faceapi_failed_jobs",
            "Failed jobs retained, by error code (internal_error and timeout are the service's; the rest the input's)",
            labels=["code"],
        )
        for error_code, count in failures:
            failed.add_metric([error_code or "unknown"], count)
        yield failed
        yield GaugeMetricFamily(
            "faceapi_oldest_queued_job_age_seconds",
            "Seconds the oldest queued job has waited since submission (0: none waits)",
            value=float(oldest_queued or 0),
        )
        yield GaugeMetricFamily(
            "faceapi_oldest_running_job_age_seconds",
            "Seconds the longest-running job has run (0: none runs); the reaper steps in at JOB_RUNNING_DEADLINE",
            value=float(oldest_running or 0),
        )
        yield self._histogram(durations)
        yield self._deliveries()
        depth = GaugeMetricFamily("faceapi_queue_depth", "Jobs waiting in the Celery queue (all its priorities)")
        depth.add_metric([], sum(redis_client().llen(name) for name in jobqueue.job_queue_lists()))
        yield depth
        yield GaugeMetricFamily(
            "faceapi_webhook_queue_depth",
            "Webhook deliveries waiting in their own queue",
            value=redis_client().llen(WEBHOOK_QUEUE),
        )
        nodes = workers_online()
        if nodes is not None:
            yield GaugeMetricFamily(
                "faceapi_workers_online", "Celery worker nodes answering a ping through the broker", value=nodes
            )

    @staticmethod
    def _deliveries() -> GaugeMetricFamily:
        """Webhook delivery attempts logged on retained jobs, by outcome (2xx, other status, error)."""
        attempt = func.jsonb_array_elements(Job.deliveries).table_valued("value").alias("attempt")
        status = attempt.c.value.op("->>")("status_code")
        outcome = case((status.is_(None), "error"), (status.like("2%"), "delivered"), else_="rejected").label("outcome")
        with new_session() as session:
            rows = session.execute(
                select(outcome, func.count()).select_from(Job).join(attempt, true()).group_by(outcome)
            )
            family = GaugeMetricFamily(
                "faceapi_webhook_attempts", "Webhook delivery attempts by outcome", labels=["outcome"]
            )
            for name, count in rows:
                family.add_metric([name], count)
        return family

    @staticmethod
    def _histogram(durations) -> HistogramMetricFamily:
        histogram = HistogramMetricFamily(
            "faceapi_job_duration_seconds", "Run time of succeeded jobs (started to finished)", labels=["type"]
        )
        by_type: dict[str, list[float]] = {}
        for job_type, seconds in durations:
            by_type.setdefault(job_type.value, []).append(float(seconds))
        for job_type, values in by_type.items():
            buckets = [(str(bound), sum(v <= bound for v in values)) for bound in DURATION_BUCKETS]
            buckets.append(("+Inf", len(values)))
            histogram.add_metric([job_type], buckets, sum_value=sum(values))
        return histogram


registry = CollectorRegistry()
registry.register(ServiceCollector())


@bp.get("/metrics")
def metrics():
    settings = app_settings()
    token = settings.metrics_token
    if not token and settings.is_production:
        # Every organisation's job counts: outside development never served without a token, yet the
        # API itself keeps running (a monitoring setting missing is no reason to refuse requests).
        return error_response(
            403, "metrics_token_unset", "GET /metrics is served only with a bearer token here: set METRICS_TOKEN."
        )
    if token:
        supplied = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(supplied, f"Bearer {token}".encode()):
            response, status = error_response(
                401, "unauthorized", "GET /metrics needs the bearer token (METRICS_TOKEN)."
            )
            response.headers["WWW-Authenticate"] = "Bearer"
            return response, status
    return Response(generate_latest(registry), mimetype="text/plain; version=0.0.4")
