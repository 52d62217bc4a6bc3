"""Prometheus metrics at /metrics, read from the database and Redis at scrape time.

Reading the state at scrape time (instead of counting in each process) gives the same
numbers whichever gunicorn worker answers, with no multiprocess bookkeeping. The duration
histogram covers the finished jobs still retained in the database.
"""

from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select, true

from domain.db import new_session
from domain.models import Job, JobStatus
from domain.notifications import redis_client
from workers.celery_app import QUEUE_NAME

bp = Blueprint("metrics", __name__)
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class ServiceCollector(Collector):
    def collect(self):
        with new_session() as session:
            counts = session.execute(select(Job.type, Job.status, func.count()).group_by(Job.type, Job.status)).all()
            durations = session.execute(
                select(Job.type, func.extract("epoch", Job.finished_at - Job.started_at)).where(
                    Job.status == JobStatus.succeeded, Job.started_at.is_not(None)
                )
            ).all()
        jobs = GaugeMetricFamily("faceapi_jobs", "Jobs in the database by type and status", labels=["type", "status"])
        for job_type, status, count in counts:
            jobs.add_metric([job_type.value, status.value], count)
        yield jobs
        yield self._histogram(durations)
        yield self._deliveries()
        depth = GaugeMetricFamily("faceapi_queue_depth", "Messages waiting in the Celery queue")
        depth.add_metric([], redis_client().llen(QUEUE_NAME))
        yield depth

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
    return Response(generate_latest(registry), mimetype="text/plain; version=0.0.4")
