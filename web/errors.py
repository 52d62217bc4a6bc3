"""Every error is JSON: `{"error": {"code": ..., "message": ...}}`, never HTML or a stack trace."""

from __future__ import annotations

import logging

import redis
from flask import Flask, Response, current_app, jsonify, request
from flask_limiter.errors import RateLimitExceeded
from kombu.exceptions import OperationalError as BrokerUnavailable
from limits.errors import StorageError
from sqlalchemy.exc import DataError, OperationalError
from werkzeug.exceptions import HTTPException

from domain.db import DatabaseNotConfigured
from domain.errors import ServiceError, request_too_large
from web.settings import app_settings

log = logging.getLogger(__name__)


JSON_BODY_LIMIT = 64 * 1024
# Seconds a 503 asks the client to wait before it tries again.
RETRY_AFTER_SECONDS = 5


def too_large() -> ServiceError:
    """A request body over its limit, naming every limit (which one applied depends on the route)."""
    settings = app_settings()
    return request_too_large(settings.max_upload_bytes, settings.max_batch_bytes, JSON_BODY_LIMIT)


def error_response(status: int, code: str, message: str) -> tuple[Response, int]:
    return jsonify({"error": {"code": code, "message": message}}), status


def _http_code(exc: HTTPException) -> str:
    return (exc.name or "error").lower().replace(" ", "_").replace("'", "")


def unavailable(code: str, message: str) -> tuple[Response, int]:
    """503 with `Retry-After`: a backing service is down, the request may be sent again later."""
    response, status = error_response(503, code, message)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response, status


def _submits_job() -> bool:
    """Whether the request is a submission (its view is `@idempotent`: web/idempotency.py)."""
    view = current_app.view_functions.get(request.endpoint or "")
    return bool(getattr(view, "submits_job", False))


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def service_error(exc: ServiceError):
        response = jsonify({"error": exc.as_dict()})
        if exc.status == 503:
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        elif "retry_after" in exc.details:  # e.g. job_budget_exceeded's estimate (domain/budget.py)
            response.headers["Retry-After"] = str(exc.details["retry_after"])
        return response, exc.status

    @app.errorhandler(RateLimitExceeded)
    def rate_limited(exc: RateLimitExceeded):
        response, status = error_response(429, "rate_limited", f"Too many requests: limit is {exc.description}.")
        return response, status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.response is not None:  # an answer made already (request validation's)
            return exc.response
        if exc.code == 413:
            return service_error(too_large())
        messages = {
            404: "Not found.",
            405: "Method not allowed.",
        }
        message = messages.get(exc.code or 500) or exc.description or exc.name
        response, status = error_response(exc.code or 500, _http_code(exc), message)
        for header in ("Allow", "Retry-After"):
            if exc.get_response().headers.get(header):
                response.headers[header] = exc.get_response().headers[header]
        return response, status

    @app.errorhandler(DataError)
    def invalid_value(exc: DataError):
        # A value PostgreSQL cannot hold (e.g. a NUL character in a text): the client's input.
        return error_response(400, "invalid_input", "A value in the request cannot be stored or searched.")

    @app.errorhandler(OperationalError)
    @app.errorhandler(DatabaseNotConfigured)
    def database_unavailable(exc: Exception):
        log.error("database unavailable: %s", type(exc).__name__)
        return unavailable("database_unavailable", "The database is unavailable; try again shortly.")

    @app.errorhandler(redis.RedisError)
    @app.errorhandler(StorageError)
    @app.errorhandler(BrokerUnavailable)
    def redis_unavailable(exc: Exception):
        # Redis holds the token denylist, the rate-limit counters and the job queue: without it a
        # token cannot be checked (the denylist fails closed), a limit cannot be counted (the
        # limiter fails closed too) and a job cannot be queued. Never a 500.
        log.error("redis unavailable: %s", type(exc).__name__)
        if _submits_job():
            return unavailable("queue_unavailable", "The job queue is unavailable; try again shortly.")
        return unavailable(
            "service_unavailable", "Redis (tokens, rate limits, job queue) is unavailable; try again shortly."
        )

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "An unexpected error occurred.")
