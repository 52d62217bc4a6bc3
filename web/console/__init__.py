"""The console at /console/: server-rendered pages (Jinja, autoescaped) with a little JavaScript,
for operators to see and fix their galleries. It is a client of the same services as the API
(web/services/*), with a Caller built from the signed-in account: the same permissions, the same
organisation boundary (another organisation's id answers 404), the same audit log.

Rules every view here follows: a page or action needs a signed-in session (web/console/session.py);
every state-changing request carries the session's CSRF token (a form field or the X-CSRFToken
header); actions check the role the API asks for, whatever the page showed; nothing reads the
database around the services."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

import redis
from flask import Blueprint, Flask, jsonify, redirect, render_template, request, url_for
from flask_limiter.errors import RateLimitExceeded
from flask_wtf.csrf import generate_csrf, validate_csrf
from sqlalchemy.exc import OperationalError
from wtforms import ValidationError

from config import Settings
from domain import callers
from domain.errors import ServiceError
from domain.models import Role
from web.console.session import SignedIn, configure, signed_in

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates", static_folder="static")
PUBLIC_ENDPOINTS = {"console.login", "console.static"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
MANAGERS = (Role.admin, Role.operator)


def wants_json() -> bool:
    """The page's own scripts ask for JSON; a browser navigating asks for HTML."""
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def current() -> SignedIn:
    user = signed_in()
    assert user is not None, "every console view but the sign-in runs signed in"
    return user


def require_role(*roles: Role) -> Callable:
    """The role the API asks for the same action: a page that hid the button is not the check."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any):
            callers.require_role(current().caller, roles)
            return view(*args, **kwargs)

        return wrapper

    return decorator


@bp.before_request
def guard() -> Any:
    if request.method not in SAFE_METHODS:
        token = request.form.get("csrf_token") or request.headers.get("X-CSRFToken")
        try:
            validate_csrf(token)
        except ValidationError:
            raise ServiceError(
                "csrf_invalid", "The form has expired or did not come from this console: reload the page.", status=400
            ) from None
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if signed_in() is None:
        if wants_json() or request.method not in SAFE_METHODS:
            raise ServiceError("unauthorized", "Sign in to the console first.", status=401)
        return redirect(url_for("console.login", next=request.full_path.rstrip("?")))
    return None


@bp.context_processor
def page_context() -> dict[str, Any]:
    try:
        user = signed_in() if request.endpoint not in PUBLIC_ENDPOINTS else None
    except (redis.RedisError, OperationalError):
        user = None  # the error page itself, while Redis or the database is down
    role = user.caller.role if user else None
    return {
        "csrf_token": generate_csrf,
        "user": user,
        "can_manage": role in MANAGERS,
        "is_admin": role is Role.admin,
    }


# The pages whose forms post under their own address (an account's role, an API key's revocation).
FORM_PAGES = ("console.accounts_page", "console.api_key_page")


def _page_of_the_failed_form() -> str | None:
    """Where the form that failed was, for the error page to link back to it. Found from the
    request, since the console sends no Referer (Referrer-Policy: no-referrer)."""
    if request.method in SAFE_METHODS:
        return None
    arguments = request.view_args or {}
    if "person_id" in arguments:
        return url_for("console.person", person_id=arguments["person_id"])
    if "number" in arguments:  # a stranger of a gallery's unknowns pool
        return url_for("console.unknowns", name=arguments["name"])
    return _form_page_above(request.path)


def _form_page_above(path: str) -> str | None:
    for endpoint in FORM_PAGES:
        page = url_for(endpoint)
        if path == page or path.startswith(page + "/"):
            return page
    return None


def _error_page(status: int, code: str, message: str) -> Any:
    if wants_json():
        return jsonify({"error": {"code": code, "message": message}}), status
    back = _page_of_the_failed_form()
    return render_template("error.html", status=status, code=code, message=message, back=back), status


@bp.errorhandler(ServiceError)
def service_error(exc: ServiceError) -> Any:
    if wants_json():
        return jsonify({"error": exc.as_dict()}), exc.status
    return _error_page(exc.status, exc.code, exc.message)


@bp.errorhandler(RateLimitExceeded)
def rate_limited(exc: RateLimitExceeded) -> Any:
    return _error_page(429, "rate_limited", f"Too many attempts: limit is {exc.description}. Wait a minute.")


@bp.errorhandler(404)
def not_found(exc: Exception) -> Any:
    return _error_page(404, "not_found", "There is nothing here.")


@bp.errorhandler(redis.RedisError)
@bp.errorhandler(OperationalError)
def unavailable(exc: Exception) -> Any:
    # The sessions live in Redis and everything else in PostgreSQL: a page, not a JSON error.
    return _error_page(503, "service_unavailable", "The database or Redis is unreachable: try again in a moment.")


def init_app(app: Flask, settings: Settings) -> None:
    from web.console import admin, pages, unknowns, work  # noqa: F401  (their views register on bp)

    configure(app, settings)
    app.register_blueprint(bp)
