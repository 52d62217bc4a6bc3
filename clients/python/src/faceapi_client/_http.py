"""The transport under every call: authentication (password with automatic refresh, or an API
key), retries with backoff that honour `Retry-After`, and errors turned into exceptions."""

from __future__ import annotations

import base64
import json
import logging
import random
import threading
import time
import uuid
from typing import Any

import httpx

from faceapi_client import errors
from faceapi_client.errors import retry_after_seconds

log = logging.getLogger("faceapi_client")

API_PREFIX = "/api/v1"
# An access token is refreshed this long before it expires (clock skew, slow requests).
REFRESH_MARGIN_SECONDS = 60.0
# Routes where the server honours Idempotency-Key: a POST there can be re-sent after a broken
# connection without creating anything twice.
IDEMPOTENT_POST_ROUTES = ("/persons", "/faces", "/recognize", "/verify", "/detect", "/enrollments", "/auth/me/face")


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def token_expiry(token: str) -> float | None:
    """The `exp` claim (unix seconds) of a JWT, read without checking it (the server does)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


def error_from(response: httpx.Response) -> errors.APIError:
    """The typed exception for an error answer: its code, message and extra fields."""
    status = response.status_code
    try:
        body = response.json()
        error = body["error"]
        code, message = str(error["code"]), str(error.get("message") or "")
        details = {k: v for k, v in error.items() if k not in ("code", "message")}
    except (ValueError, KeyError, TypeError):
        code = {404: "not_found", 502: "bad_gateway", 503: "service_unavailable", 504: "gateway_timeout"}.get(
            status, f"http_{status}"
        )
        text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
        message = f"HTTP {status} {response.reason_phrase}" + (f": {text}" if text else "")
        details = {}
    cls = errors.error_class(status)
    return cls(code, message, status=status, details=details, headers=dict(response.headers))


class Credentials:
    """What the client authenticates with, and the tokens it holds. Thread-safe."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        email: str | None = None,
        password: str | None = None,
        access_token: str | None = None,
        refresh_token: str | None = None,
    ):
        self.api_key = api_key
        self.email = email
        self.password = password
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.access_expires_at: float | None = token_expiry(access_token) if access_token else None
        self.lock = threading.RLock()

    @property
    def anonymous(self) -> bool:
        return not (self.api_key or self.access_token or (self.email and self.password))

    def store(self, tokens: dict[str, Any]) -> None:
        with self.lock:
            self.access_token = tokens["access_token"]
            if tokens.get("refresh_token"):
                self.refresh_token = tokens["refresh_token"]
            expiry = token_expiry(self.access_token)
            if expiry is None and tokens.get("expires_in"):
                expiry = time.time() + float(tokens["expires_in"])
            self.access_expires_at = expiry


class Transport:
    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        timeout: float = 60.0,
        max_retries: int = 5,
        connect_retries: int = 3,
        max_retry_wait: float = 120.0,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        http: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        headers: dict[str, str] | None = None,
        verify: bool | str = True,
    ):
        self.base_url = normalize_url(base_url)
        self.credentials = credentials
        self.timeout = timeout
        self.max_retries = max_retries
        self.connect_retries = connect_retries
        self.max_retry_wait = max_retry_wait
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        from faceapi_client import __version__

        self.http = http or httpx.Client(
            base_url=self.base_url + API_PREFIX,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            verify=verify,
            headers={"User-Agent": f"faceapi-client/{__version__}", **(headers or {})},
        )
        self.sleep = time.sleep  # tests may replace it

    def close(self) -> None:
        self.http.close()

    # --- authentication ------------------------------------------------------------------------

    def bearer(self) -> str | None:
        """The bearer to send now: the API key, or an access token fresh for at least a minute."""
        c = self.credentials
        if c.api_key:
            return c.api_key
        with c.lock:
            if c.access_token is None and c.email and c.password:
                self.login()
            elif (
                c.access_token is not None
                and c.access_expires_at is not None
                and c.access_expires_at - time.time() < REFRESH_MARGIN_SECONDS
                and (c.refresh_token or (c.email and c.password))
            ):
                self.renew()
            return c.access_token

    def login(self) -> dict[str, Any]:
        c = self.credentials
        if not (c.email and c.password):
            raise errors.AuthenticationError("missing_credentials", "An email and a password are needed to log in.")
        response = self.request(
            "POST", "/auth/login", json={"email": c.email, "password": c.password}, auth=False, idempotent=True
        )
        tokens = response.json()
        c.store(tokens)
        return tokens

    def renew(self) -> None:
        """A new access token from the refresh token; a new login when that is refused and the
        password is known (the refresh token expired after 30 days, or was revoked)."""
        c = self.credentials
        with c.lock:
            if c.refresh_token:
                try:
                    response = self.request(
                        "POST", "/auth/refresh", auth=False, bearer=c.refresh_token, idempotent=True
                    )
                    c.store(response.json())
                    return
                except errors.AuthenticationError:
                    if not (c.email and c.password):
                        raise
            self.login()

    # --- requests ------------------------------------------------------------------------------

    def backoff(self, attempt: int) -> float:
        return min(self.backoff_cap, self.backoff_base * 2**attempt) * random.uniform(0.5, 1.0)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        data: dict[str, Any] | None = None,
        files: list[tuple[str, tuple[str, bytes, str]]] | None = None,
        idempotency_key: str | None = None,
        idempotent: bool | None = None,
        auth: bool = True,
        bearer: str | None = None,
        timeout: float | None = None,
        gone_ok: bool = False,
    ) -> httpx.Response:
        """One API call with retries:

        - 429 and 503 are waited out (Retry-After, else exponential backoff with jitter): the
          server refused them before doing anything;
        - a broken connection is retried only when the call is idempotent (GET, DELETE, PATCH, or
          a POST carrying an Idempotency-Key the route honours); a connection never made, always;
        - 401 `token_expired` refreshes the access token once and sends the call again;
        - `gone_ok`: a DELETE re-sent after a broken connection that now answers 404 had worked.
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH") or (
                method == "POST" and idempotency_key is not None and path.endswith(IDEMPOTENT_POST_ROUTES)
            )
        attempt, renewed, resent_after_break = 0, False, False
        params = {k: v for k, v in (params or {}).items() if v is not None}
        while True:
            headers: dict[str, str] = {}
            token = bearer or (self.bearer() if auth else None)
            if token:
                headers["Authorization"] = f"Bearer {token}"
            if idempotency_key:
                headers["Idempotency-Key"] = idempotency_key
            try:
                response = self.http.request(
                    method,
                    path,
                    params=params or None,
                    json=json,
                    data=data,
                    files=files,
                    headers=headers,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.TransportError as exc:
                never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
                limit = min(self.connect_retries, self.max_retries) if never_sent else self.max_retries
                if (never_sent or idempotent) and attempt < limit:
                    delay = self.backoff(attempt)
                    log.info("%s %s: %s; retrying in %.1fs", method, path, type(exc).__name__, delay)
                    self.sleep(delay)
                    attempt += 1
                    resent_after_break = resent_after_break or not never_sent
                    continue
                code = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection_error"
                raise errors.TransportError(code, _transport_message(self.base_url, exc)) from exc

            status = response.status_code
            if status == 401 and auth and not bearer and not renewed and not self.credentials.api_key:
                code = _error_code(response)
                c = self.credentials
                if (code == "token_expired" and (c.refresh_token or c.password)) or (
                    code == "token_revoked" and c.email and c.password
                ):
                    with c.lock:
                        if c.access_token != token:
                            pass  # renewed meanwhile by another thread
                        elif code == "token_expired":
                            self.renew()
                        else:
                            self.login()
                    renewed = True
                    continue
            if status in (429, 503) and attempt < self.max_retries:
                delay = retry_after_seconds(response.headers.get("Retry-After"))
                if delay is None:
                    delay = self.backoff(attempt)
                if delay <= self.max_retry_wait:
                    log.info("%s %s: %s; retrying in %.1fs", method, path, status, delay)
                    self.sleep(delay + (0.05 if status == 429 else 0))
                    attempt += 1
                    continue
            if status in (502, 504) and idempotent and attempt < self.max_retries:
                self.sleep(self.backoff(attempt))
                attempt += 1
                continue
            if status == 404 and gone_ok and resent_after_break:
                return response
            if status >= 400:
                raise error_from(response)
            return response


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    if url.endswith(API_PREFIX):
        url = url[: -len(API_PREFIX)]
    return url


def _error_code(response: httpx.Response) -> str | None:
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def _transport_message(base_url: str, exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"The service at {base_url} did not answer in time ({type(exc).__name__})."
    reason = str(exc) or type(exc).__name__
    return f"Cannot reach the service at {base_url}: {reason}."
