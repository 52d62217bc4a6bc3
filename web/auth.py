"""Authentication: login, refresh, logout, and the decorators every other route uses."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Flask, g, jsonify
from flask_jwt_extended import (
    create_access_token,
    create_refresh_token,
    current_user,
    get_jti,
    get_jwt,
    jwt_required,
    verify_jwt_in_request,
)
from flask_jwt_extended.exceptions import JWTDecodeError, WrongTokenError
from jwt.exceptions import DecodeError

from domain import accounts, api_keys
from domain.callers import Caller, require_role
from domain.errors import ServiceError
from domain.models import Account, ApiKey, Role
from domain.notifications import redis_client
from web import services
from web.db import get_session
from web.errors import error_response
from web.extensions import jwt, limiter, login_email_key, presented_api_key
from web.forms import checked_webhook, read_upload
from web.idempotency import idempotent
from web.ratelimits import login_limit, signup_limit, submit_limit
from web.schemas import (
    AccessToken,
    Credentials,
    IdempotencyHeader,
    PasswordChange,
    PasswordConfirmation,
    PersonAccepted,
    ProfileFaceForm,
    SubmittedJob,
    Tokens,
    WaitQuery,
    Whoami,
)
from web.schemas import Account as AccountOut
from web.settings import app_settings
from web.validation import AUTH, errors, resource, validated
from web.waiting import accepted

bp = resource("auth", __name__, "/api/v1/auth", "Accounts of one's own: tokens, password, face profile")
PUBLIC: list = []  # operations without a token

REVOKED_PREFIX = "jwt:revoked:"
# An access token names the refresh token of its login, so that logging out revokes both.
REFRESH_JTI = "rjti"


def current_login() -> Account:
    """The account of a password login (routes about the account itself take no API key)."""
    return current_user


def current_caller() -> Caller:
    """Who is calling: set by `roles_required` from an API key or an access token."""
    return g.caller


def _authenticate() -> Caller:
    if (raw := presented_api_key()) is not None:
        found = api_keys.authenticate(get_session(), raw)
        if found is None:
            raise ServiceError("api_key_invalid", "The API key is unknown, revoked or expired.", status=401)
        return Caller.of_key(*found)
    verify_jwt_in_request()
    return Caller.of_account(current_user)


def roles_required(*roles: Role, signed_in: bool = False) -> Callable:
    """An API key or a valid access token, of one of `roles` (any role when none is named);
    `signed_in`: a person logged in with a password, never an API key (services.require_signed_in)."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any):
            g.caller = _authenticate()
            if signed_in:
                services.require_signed_in(g.caller)
            require_role(g.caller, roles)
            return view(*args, **kwargs)

        return wrapper

    return decorator


def _access_token(account: Account, refresh_jti: str) -> str:
    claims = {"role": account.role.value, REFRESH_JTI: refresh_jti}
    return create_access_token(identity=str(account.id), additional_claims=claims)


def _tokens(account: Account) -> dict[str, Any]:
    refresh_token = create_refresh_token(identity=str(account.id))
    return {
        "access_token": _access_token(account, get_jti(refresh_token)),
        "refresh_token": refresh_token,
        "token_type": "Bearer",
        "expires_in": app_settings().jwt_access_minutes * 60,
    }


@bp.post("/signup", security=PUBLIC, responses={201: AccountOut, **errors(400, 403, 409, 429)})
@limiter.limit(signup_limit)
@validated
def signup(body: Credentials):
    """Create an account, the admin of a new organisation of its own (SIGNUP_ENABLED)"""
    if not app_settings().signup_enabled:
        raise ServiceError("signup_disabled", "Self-service signup is turned off.", status=403)
    account = services.sign_up(get_session(), body.email, body.password)
    return jsonify(account_document(account)), 201


@bp.post("/login", security=PUBLIC, responses={200: Tokens, **errors(400, 401, 429)})
@limiter.limit(login_limit)
@limiter.limit(login_limit, key_func=login_email_key)
@validated
def login(body: Credentials):
    """Exchange email and password for an access token (15 min) and a refresh token (30 days)"""
    account = accounts.authenticate(get_session(), body.email, body.password, settings=app_settings())
    if account is None:
        # One message for an unknown email and a wrong password alike.
        raise ServiceError("invalid_credentials", "Invalid email or password.", status=401)
    return jsonify(_tokens(account))


@bp.post("/refresh", responses={200: AccessToken, **errors(401, 429)})
@jwt_required(refresh=True)
def refresh():
    """A new access token; send the refresh token as the bearer"""
    token = _access_token(current_login(), get_jwt()["jti"])
    return jsonify(
        {"access_token": token, "token_type": "Bearer", "expires_in": app_settings().jwt_access_minutes * 60}
    )


@bp.post("/logout", responses={204: None, **errors(401, 429)})
@jwt_required(verify_type=False)
def logout():
    """Revoke the presented token (access or refresh) until it would have expired anyway; an
    access token also revokes the refresh token of its login."""
    claims = get_jwt()
    revoked = {claims["jti"]: claims["exp"] - claims["iat"]}
    if refresh_jti := claims.get(REFRESH_JTI):
        revoked[str(refresh_jti)] = app_settings().jwt_refresh_days * 86400
    with redis_client().pipeline() as pipe:
        for jti, ttl in revoked.items():
            pipe.set(REVOKED_PREFIX + jti, "1", ex=max(1, int(ttl)))
        pipe.execute()
    return "", 204


@bp.get("/me", responses={200: Whoami, **errors(*AUTH)})
@roles_required()
def me():
    """The calling account; with an API key, the key (its name, prefix, role and galleries) and the
    account that created it"""
    caller = current_caller()
    session = get_session()
    document = account_document(session.get(Account, caller.id))
    if caller.is_api_key:
        key = session.get(ApiKey, caller.api_key_id)
        document["api_key"] = {
            "id": str(key.id),
            "name": key.name,
            "prefix": key.prefix,
            "role": caller.role.value,  # as it may act now: never above its creator's role
            "galleries": sorted(caller.galleries) if caller.galleries is not None else None,
        }
    return jsonify(document)


@bp.post("/password", responses={200: Tokens, **errors(400, *AUTH)})
@jwt_required()
@limiter.limit(login_limit)
@validated
def change_password(body: PasswordChange):
    """Change the password; every token issued before is revoked, fresh ones are returned."""
    account = current_login()
    services.change_password(get_session(), account, body.current_password, body.new_password)
    return jsonify(_tokens(account))


@bp.delete("/me", responses={204: None, **errors(400, 409, *AUTH)})
@jwt_required()
@limiter.limit(login_limit)
@validated
def delete_me(body: PasswordConfirmation):
    """Erase the caller's account with its galleries, persons, faces and jobs (JSON `{password}`)"""
    account = current_login()
    accounts.check_current_password(account, body.password)
    services.delete_account(get_session(), account, account, by="self")
    return "", 204


@bp.post("/me/face", responses={202: PersonAccepted, 200: SubmittedJob, **errors(400, 409, 413, 415, 503, *AUTH)})
@jwt_required()
@limiter.limit(submit_limit)
@idempotent
@validated
def enroll_me(form: ProfileFaceForm, query: WaitQuery, header: IdempotencyHeader):
    """Enroll a photo of the caller as its own face profile (a person linked to the account)"""
    webhook_url = checked_webhook(form.webhook_url)
    upload = read_upload(form.image)
    caller = Caller.of_account(current_login())
    person, job = services.submit_profile_face(get_session(), caller, upload, form.name, webhook_url)
    return accepted(job, {"person_id": str(person.id), "job_id": str(job.id)}, query.wait)


def account_document(account: Account) -> dict[str, Any]:
    return {
        "id": str(account.id),
        "email": account.email,
        "role": account.role.value,
        "organisation_id": str(account.organisation_id),
        "created_at": account.created_at.isoformat() if account.created_at else None,
    }


def init_jwt(app: Flask) -> None:
    jwt.init_app(app)

    @jwt.user_lookup_loader
    def load_account(_header: dict, payload: dict) -> Account | None:
        try:
            account_id = uuid.UUID(payload["sub"])
        except (KeyError, ValueError):
            return None
        account = get_session().get(Account, account_id)
        # Held for the request: the session's identity map keeps a row only while something
        # references it, and the user lookup would otherwise read again the row that the
        # revocation check (is_revoked, below) read a moment before. Never kept across requests.
        g.token_account = account
        return account

    @jwt.token_in_blocklist_loader
    def is_revoked(_header: dict, payload: dict) -> bool:
        # Every token we issue expires and has an id (to revoke it by): one without is not ours.
        if not payload.get("jti") or not all(isinstance(payload.get(c), int | float) for c in ("exp", "iat")):
            raise JWTDecodeError("The token lacks exp, iat or jti.")
        account = load_account(_header, payload)
        if account and account.tokens_valid_after and payload["iat"] < account.tokens_valid_after.timestamp():
            return True  # issued before the last password change
        return bool(redis_client().exists(REVOKED_PREFIX + payload["jti"]))

    def unauthorized(code: str, message: str):
        return error_response(401, code, message)

    def not_a_token(reason: str):
        """A bearer that could not be decoded: an API key where only a password login will do, a
        token whose signature fails (another instance's, or one from before JWT_SECRET_KEY
        changed), or something that is no token at all. Each gets its own code and advice."""
        if presented_api_key() is not None:
            return error_response(
                403,
                "password_login_required",
                "This call takes a password login, not an API key: log in with POST /api/v1/auth/login "
                "and send its access_token as the bearer.",
            )
        if "Signature verification failed" in reason:
            return unauthorized(
                "token_invalid", "The token was not issued by this service (or its secret changed): log in again."
            )
        return unauthorized(
            "token_malformed",
            "The bearer is not a token: send `Authorization: Bearer <access_token>` with the access_token "
            "from POST /api/v1/auth/login (whole, without quotes), or an API key fk_...",
        )

    def no_bearer(reason: str):
        if presented_api_key() is not None:  # X-API-Key, where only a password login will do
            return not_a_token(reason)
        return unauthorized(
            "unauthorized",
            "A bearer token is required: `Authorization: Bearer <access_token>` from POST /api/v1/auth/login, "
            "or an API key.",
        )

    def wrong_token_type(reason: str):
        if "non-refresh" in reason:  # flask-jwt-extended: "Only non-refresh tokens are allowed"
            return unauthorized(
                "refresh_token_not_accepted",
                "This is a refresh token: it only goes to POST /api/v1/auth/refresh. Send the access_token "
                "(from login or refresh) as the bearer instead.",
            )
        return unauthorized(
            "access_token_not_accepted",
            "POST /api/v1/auth/refresh takes the refresh_token from login as the bearer, not the access token.",
        )

    @app.errorhandler(DecodeError)  # PyJWT's: no JWT at all (flask-jwt-extended's own claim checks stay token_invalid)
    def undecodable(error: Exception):
        return not_a_token(str(error))

    @app.errorhandler(WrongTokenError)
    def wrong_type(error: WrongTokenError):
        return wrong_token_type(str(error))

    # One code per condition: a client refreshes on token_expired, logs in again on the others.
    jwt.unauthorized_loader(no_bearer)
    jwt.invalid_token_loader(lambda reason: unauthorized("token_invalid", "The token is invalid."))
    jwt.expired_token_loader(
        lambda header, payload: unauthorized(
            "token_expired", "The token has expired: get a new one from POST /api/v1/auth/refresh."
        )
    )
    jwt.revoked_token_loader(lambda header, payload: unauthorized("token_revoked", "The token has been revoked."))
    jwt.user_lookup_error_loader(lambda header, payload: unauthorized("token_invalid", "The account no longer exists."))
    jwt.needs_fresh_token_loader(lambda header, payload: unauthorized("token_invalid", "A fresh token is required."))
    jwt.token_verification_failed_loader(lambda header, payload: unauthorized("token_invalid", "The token is invalid."))
