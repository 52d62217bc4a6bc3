"""The console's sign-in: a server-side session in Redis, named by a random id that only the
browser's cookie holds (Flask's signed session cookie: HttpOnly, SameSite=Strict, Secure outside
development, path /console). Redis keeps a digest of the id, so what Redis holds cannot be
replayed as a cookie.

A session lives like the API's tokens: it ends after JWT_ACCESS_MINUTES without a request (each
request extends it), after JWT_REFRESH_DAYS in any case, when its account changes its password
(tokens_valid_after), and at once when the user signs out (its Redis record is deleted)."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass

from flask import Flask, g, session

from config import Settings
from domain.callers import Caller
from domain.models import Account
from domain.notifications import redis_client
from web.db import get_session
from web.settings import app_settings

COOKIE_NAME = "faceapi_console"
SESSION_PREFIX = "console:session:"
SID = "sid"


@dataclass(frozen=True)
class SignedIn:
    account: Account
    caller: Caller


def configure(app: Flask, settings: Settings) -> None:
    """Flask's session cookie carries the session id and the CSRF secret, for /console only."""
    # A key of its own, derived from the service's secret: a console cookie can never pass as a token.
    app.secret_key = hmac.new(settings.jwt_secret_key.encode(), b"console-session", hashlib.sha256).hexdigest()
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_PATH="/console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=settings.is_production,
        PERMANENT_SESSION_LIFETIME=settings.jwt_refresh_days * 86400,
        # The CSRF token lives as long as the session it belongs to (which ends on its own).
        WTF_CSRF_TIME_LIMIT=None,
        WTF_CSRF_HEADERS=["X-CSRFToken"],
    )


def _key(sid: str) -> str:
    return SESSION_PREFIX + hashlib.sha256(sid.encode()).hexdigest()


def _idle_seconds() -> int:
    return app_settings().jwt_access_minutes * 60


def sign_in(account: Account) -> None:
    """A new session (and a new CSRF secret: nothing from before the sign-in survives it)."""
    session.clear()
    sid = secrets.token_urlsafe(32)
    # Whole seconds, like a token's iat: a password change revokes what began before its second.
    record = {"account_id": str(account.id), "issued_at": int(time.time())}
    redis_client().set(_key(sid), json.dumps(record), ex=_idle_seconds())
    session[SID] = sid
    session.permanent = True


def sign_out() -> None:
    if sid := session.get(SID):
        redis_client().delete(_key(sid))
    session.clear()


def _record(sid: str) -> dict | None:
    """The session's record, its idle time extended; None once it has ended."""
    with redis_client().pipeline() as pipe:
        pipe.get(_key(sid))
        pipe.expire(_key(sid), _idle_seconds())
        raw, _ = pipe.execute()
    return json.loads(raw) if raw else None


def _still_valid(record: dict, account: Account | None) -> bool:
    if account is None:
        return False
    issued_at = float(record["issued_at"])
    if time.time() - issued_at > app_settings().jwt_refresh_days * 86400:
        return False
    return not (account.tokens_valid_after and issued_at < account.tokens_valid_after.timestamp())


def signed_in() -> SignedIn | None:
    """Who this request's session belongs to (read once a request), or None."""
    if "console_user" in g:
        return g.console_user
    found = None
    sid = session.get(SID)
    record = _record(sid) if isinstance(sid, str) else None
    if record is not None:
        account = get_session().get(Account, uuid.UUID(record["account_id"]))
        if _still_valid(record, account):
            found = SignedIn(account=account, caller=Caller.of_account(account))
        else:
            sign_out()
    g.console_user = found
    return found
