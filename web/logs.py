"""Structured JSON logs with a request id; tokens, passwords, images and email addresses are never logged."""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from contextlib import nullcontext

from flask import Flask, g, has_request_context, request
from pythonjsonlogger.json import JsonFormatter

from config.logs import RedactEmails
from domain.timing import StageTimer

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s"))
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactEmails())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def request_stage(stage: str):
    """`with request_stage("validate"): ...` times a stage of this request for its Server-Timing header."""
    timer = g.get("stage_timer") if has_request_context() else None
    return timer(stage) if timer is not None else nullcontext()


def server_timing() -> str:
    """The Server-Timing header (RFC-like `name;dur=ms`): the timed stages and the whole request."""
    timer = g.get("stage_timer")
    stages = timer.as_ms() if timer else {}
    stages["total"] = round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2)
    return ", ".join(f"{name};dur={ms}" for name, ms in stages.items())


def init_request_logging(app: Flask) -> None:
    access = logging.getLogger("faceapi.access")

    @app.before_request
    def assign_request_id():
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        g.started = time.perf_counter()
        g.stage_timer = StageTimer()

    @app.after_request
    def log_request(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        response.headers["Server-Timing"] = server_timing()
        # The path only: query strings and headers may carry secrets.
        access.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 1),
            },
        )
        return response
