"""Flask app factory. The web process validates, stores and enqueues; it never loads a model."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask, request

from config import Settings, get_settings
from domain.notifications import FAIL_FAST
from web.bodies import JSONProvider, guard_input
from web.errors import JSON_BODY_LIMIT, too_large

MULTIPART_OVERHEAD = 64 * 1024


def flask_config(settings: Settings) -> dict[str, Any]:
    return {
        # A little room over the image limit for the multipart envelope and form fields.
        "MAX_CONTENT_LENGTH": settings.max_upload_bytes + MULTIPART_OVERHEAD,
        "MAX_FORM_MEMORY_SIZE": 512 * 1024,  # non-file fields; above werkzeug's 64 KiB parse buffer
        "JWT_SECRET_KEY": settings.jwt_secret_key,
        "JWT_ALGORITHM": "HS256",
        "JWT_DECODE_ALGORITHMS": ["HS256"],
        "JWT_TOKEN_LOCATION": ["headers"],
        "JWT_ACCESS_TOKEN_EXPIRES": timedelta(minutes=settings.jwt_access_minutes),
        "JWT_REFRESH_TOKEN_EXPIRES": timedelta(days=settings.jwt_refresh_days),
        "RATELIMIT_STORAGE_URI": settings.redis_url or "memory://",
        "RATELIMIT_ENABLED": settings.ratelimit_enabled,
        "RATELIMIT_HEADERS_ENABLED": True,
        "RATELIMIT_KEY_PREFIX": "faceapi-rl",
        # Redis down: the limiter fails closed (the error answers 503, web/errors.py), neither
        # swallowing it nor counting in memory. Every limited route needs Redis further on anyway
        # (tokens, the job queue), and a login must not become an unlimited password guess.
        "RATELIMIT_SWALLOW_ERRORS": False,
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": False,
        "RATELIMIT_STORAGE_OPTIONS": (
            {"socket_connect_timeout": 2, "socket_timeout": 2, "retry": FAIL_FAST} if settings.redis_url else {}
        ),
    }


def check_secret(settings: Settings) -> None:
    from config import WELL_KNOWN_SECRETS

    if settings.is_production and (
        settings.jwt_secret_key.lower() in WELL_KNOWN_SECRETS or len(settings.jwt_secret_key) < 32
    ):
        raise RuntimeError("JWT_SECRET_KEY must be set to a random value of at least 32 characters.")


def create_app(overrides: dict[str, Any] | None = None, *, settings: Settings | None = None) -> Flask:
    """The web app, run by `settings` (by default the process's, read from the environment: the one
    place the web process reads them); `overrides` are Flask config values (tests)."""
    from web import (
        accounts,
        auth,
        contract,
        db,
        enrollments,
        exports,
        galleries,
        health,
        jobs,
        metrics,
        persons,
        recognize,
        unknowns,
        webhooks,
    )
    from web.errors import register_error_handlers
    from web.extensions import limiter
    from web.logs import configure_logging, init_request_logging
    from web.settings import CONFIG_KEY

    settings = settings or get_settings()
    check_secret(settings)
    configure_logging()
    app = contract.make_app(__name__)
    app.json = JSONProvider(app)  # deeply nested JSON is invalid JSON, not a RecursionError
    app.json.sort_keys = False  # keys in the order the schemas declare them
    app.config.update(flask_config(settings), **{CONFIG_KEY: settings})
    app.config.update(overrides or {})

    if settings.proxy_hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # Client addresses (used by rate limits) come from X-Forwarded-For, set by our own proxies only.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops, x_proto=settings.proxy_hops)
    db.init_app(app)
    from web import migrate  # Flask-Migrate: `flask --app web:create_app db upgrade`

    migrate.init_app(app)
    auth.init_jwt(app)
    limiter.init_app(app)
    if settings.cors_origins:
        from flask_cors import CORS

        CORS(app, origins=list(settings.cors_origins))
    resources = (auth, accounts, galleries, unknowns, exports, persons, enrollments, recognize, jobs, webhooks, health)
    for module in resources:
        app.register_api(module.bp)
    app.register_blueprint(metrics.bp)
    from web import console  # the operators' pages at /console/, on the same services

    console.init_app(app, settings)
    contract.add_document_routes(app)
    register_error_handlers(app)
    init_request_logging(app)

    app.wsgi_app = guard_input(app.wsgi_app)  # a broken chunked body is a 400, not a 500

    @app.before_request
    def limit_json_bodies():
        if not request.is_json:
            return
        if (request.content_length or 0) > JSON_BODY_LIMIT:
            raise too_large()
        if request.content_length is None:
            # Chunked: no Content-Length to check. Read at most one byte over the limit (werkzeug
            # stops the stream there) and refuse the body if that byte came.
            request.max_content_length = JSON_BODY_LIMIT + 1
            if len(request.get_data(cache=True)) > JSON_BODY_LIMIT:
                raise too_large()

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Content-Security-Policy", contract.content_security_policy(request.path))
        response.headers.setdefault("Cache-Control", "no-store")
        if settings.is_production:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        return response

    return app
