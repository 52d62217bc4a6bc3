"""Liveness and readiness probes (no authentication; they reveal nothing)."""

from __future__ import annotations

from flask import jsonify
from sqlalchemy import text

from domain.db import get_engine
from domain.notifications import redis_client
from domain.schema import schema_is_current
from web.schemas import Health, Readiness
from web.validation import resource

bp = resource("health", __name__, None, "Probes, no authentication")


@bp.get("/healthz", security=[], responses={200: Health})
def healthz():
    """The process is alive"""
    return jsonify({"status": "ok"})


def _check_database() -> str:
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
        return "ok" if schema_is_current() else "schema_outdated"
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        return "unreachable"


def _check_redis() -> str:
    try:
        return "ok" if redis_client().ping() else "unreachable"
    except Exception:  # noqa: BLE001
        return "unreachable"


@bp.get("/readyz", security=[], responses={200: Readiness, 503: Readiness})
def readyz():
    """Database (schema current) and Redis reachable"""
    checks = {"database": _check_database(), "redis": _check_redis()}
    ready = all(value == "ok" for value in checks.values())
    return jsonify({"status": "ready" if ready else "not_ready", "checks": checks}), 200 if ready else 503
