"""GET /metrics: behind METRICS_TOKEN when it is set; the gauges to alert on (workers online, the
oldest queued job's wait, the longest run, failures by code); and the example alert rules and
Grafana dashboard under deploy/monitoring name only metrics the service exports."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select, update

from domain import jobs
from domain.db import session_scope
from domain.errors import ServiceError
from domain.models import Account, Job
from tests.conftest import make_account, override_settings, stored_job

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
SAMPLE = re.compile(r"^(faceapi_[a-z_]+)(\{[^}]*\})? (\S+)$", re.M)


def samples(text: str) -> dict[str, float]:
    """{'name{labels}': value} of the faceapi_* samples in an exposition."""
    return {f"{m.group(1)}{m.group(2) or ''}": float(m.group(3)) for m in SAMPLE.finditer(text)}


@pytest.fixture()
def aged_jobs(services):
    """A job queued 5 minutes ago, one running for 2 minutes, one failed with internal_error."""
    email, _ = make_account("operator")
    with session_scope() as session:
        owner = session.execute(select(Account.id).where(Account.email == email)).scalar_one()
        created = [stored_job(session, owner).id for _ in range(3)]
    queued, running, failed = created
    with session_scope() as session:
        jobs.claim_with_inputs(session, running)
        jobs.claim_with_inputs(session, failed)
        jobs.finish(session, failed, error=ServiceError("internal_error", "x"))
        now = jobs.now()
        session.execute(update(Job).where(Job.id == queued).values(created_at=now - timedelta(minutes=5)))
        session.execute(update(Job).where(Job.id == running).values(started_at=now - timedelta(minutes=2)))
    yield created
    with session_scope() as session:
        session.execute(Job.__table__.delete().where(Job.id.in_(created)))


def test_metrics_need_the_token_when_one_is_set(client):
    with override_settings(METRICS_TOKEN="a-long-metrics-token"):
        missing = client.get("/metrics")
        wrong = client.get("/metrics", headers={"Authorization": "Bearer another-token"})
        right = client.get("/metrics", headers={"Authorization": "Bearer a-long-metrics-token"})
    assert missing.status_code == 401 and missing.get_json()["error"]["code"] == "unauthorized"
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert wrong.status_code == 401
    assert right.status_code == 200 and "faceapi_queue_depth" in right.get_data(as_text=True)


def test_the_gauges_to_alert_on(client, worker, aged_jobs):
    from web import metrics

    metrics.workers_online.at = float("-inf")  # count now, not from an earlier scrape
    values = samples(client.get("/metrics").get_data(as_text=True))
    assert values["faceapi_workers_online"] >= 1
    assert values["faceapi_oldest_queued_job_age_seconds"] >= 300
    assert values["faceapi_oldest_running_job_age_seconds"] >= 120
    assert values['faceapi_failed_jobs{code="internal_error"}'] >= 1
    assert "faceapi_queue_depth" in values


def test_without_the_broker_the_workers_are_unknown_not_zero(client, monkeypatch):
    import jobqueue
    from web import metrics

    def unreachable(**_):
        raise ConnectionError("broker down")

    monkeypatch.setattr(jobqueue.app().control, "ping", unreachable)
    monkeypatch.setattr(metrics.workers_online, "at", float("-inf"))
    assert "faceapi_workers_online" not in client.get("/metrics").get_data(as_text=True)
    metrics.workers_online.at = float("-inf")


def exported_names() -> set[str]:
    """Every metric family web/metrics.py declares, with a histogram's series names."""
    source = (ROOT / "web" / "metrics.py").read_text()
    names = set(re.findall(r'"(faceapi_[a-z_]+)"', source))
    names |= {f"{n}{suffix}" for n in names if n.endswith("_seconds") for suffix in ("_bucket", "_sum", "_count")}
    return names


def referenced(expression: str) -> set[str]:
    return set(re.findall(r"\bfaceapi_[a-z_]+", expression))


def test_alert_rules_use_exported_metrics():
    rules = [
        rule for group in yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"] for rule in group["rules"]
    ]
    assert {"FaceapiJobsWaiting", "FaceapiNoWorkers"} <= {rule["alert"] for rule in rules}
    names = exported_names()
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("page", "warn", "info")
        unknown = referenced(rule["expr"]) - names
        assert not unknown, f"{rule['alert']}: {sorted(unknown)} are not exported"
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"])
    prometheus = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    assert prometheus["rule_files"] == ["alerts.yml"]
    (job,) = prometheus["scrape_configs"]
    assert job["metrics_path"] == "/metrics" and job["authorization"]["type"] == "Bearer"
    assert f'up{{job="{job["job_name"]}"}}' in (MONITORING / "alerts.yml").read_text()


def test_the_dashboard_uses_exported_metrics():
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    names = exported_names()
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert expressions
    used = set().union(*(referenced(expression) for expression in expressions))
    assert used <= names, sorted(used - names)
    assert {"faceapi_workers_online", "faceapi_oldest_queued_job_age_seconds"} <= used
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
