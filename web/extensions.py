"""Flask extensions, created unbound and initialised by the app factory."""

from __future__ import annotations

import hashlib
import hmac

from flask import request
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from domain import api_keys
from web.settings import app_settings


def presented_api_key() -> str | None:
    """An API key from `X-API-Key`, or from `Authorization: Bearer fk_...`."""
    if key := request.headers.get("X-API-Key"):
        return key.strip()
    scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token.startswith(api_keys.PREFIX) else None


def client_key() -> str:
    """The rate-limit bucket: an API key has its own (by a digest: the secret never reaches Redis),
    anything else shares its client address's."""
    if key := presented_api_key():
        return "api-key:" + hashlib.sha256(key.encode()).hexdigest()[:24]
    return get_remote_address()


jwt = JWTManager()
limiter = Limiter(key_func=client_key, default_limits=[], headers_enabled=True)


def login_email_key() -> str:
    """Rate-limit key for login attempts against one email from one client address: guessing one
    account's password is slowed down, while nobody can lock its owner out from elsewhere. The
    email goes in as a keyed digest (a plain one could be reversed from a list of addresses):
    flask-limiter logs the key of a limit that is hit, and Redis keeps it."""
    body = request.get_json(silent=True)
    # The API's JSON login, or the console's form: one bucket per email and address for both.
    email = body.get("email") if isinstance(body, dict) else request.form.get("email")
    email = str(email).strip().lower()[:254] if email else ""
    digest = hmac.new(app_settings().jwt_secret_key.encode(), email.encode(), hashlib.sha256).hexdigest()[:24]
    return f"login-email:{digest}|{get_remote_address()}"
