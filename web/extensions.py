"""Flask extensions, created unbound and initialised by the app factory."""

from __future__ import annotations

from functools import lru_cache

import redis
from flask import request
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

jwt = JWTManager()


@lru_cache(maxsize=4)
def _redis_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def redis_client() -> redis.Redis:
    """One pooled client per process (the token denylist is checked on every request)."""
    from config import get_settings

    return _redis_for(get_settings().redis_url)


limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=True)


def login_email_key() -> str:
    """Rate-limit key for login attempts against one email, whichever client sends them."""
    body = request.get_json(silent=True)
    email = body.get("email") if isinstance(body, dict) else None
    return f"login-email:{str(email).strip().lower()[:254]}" if email else get_remote_address()
