"""Webhook delivery: sign, POST, log the attempt, and retry with exponential backoff and jitter.

An attempt is bounded whatever the receiver does:

- it connects to the address the SSRF guard checked (domain/webhooks.resolve), never resolving
  the host a second time, with the URL's host in `Host` and in TLS's SNI and certificate check;
- it has a wall-clock deadline, WEBHOOK_TIMEOUT_SECONDS in all (a socket timeout only bounds one
  read: a receiver dripping a byte every 5 s held a worker until the job's 120 s limit). A timer
  shuts the socket down at the deadline, which ends any read, write or TLS handshake under way;
  the attempt is logged `deadline_exceeded` and retried like any failure;
- it reads at most MAX_RESPONSE_BYTES of the answer (only its status matters; a 300 MB answer
  grew a worker by 460 MB).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import random
import socket
import ssl
import threading
import time
import uuid
from functools import lru_cache

from config import Settings
from domain import unknowns, webhooks
from domain.batches import batch_document
from domain.db import session_scope
from domain.errors import ServiceError
from domain.jobs import job_document, now
from domain.models import Batch, Job

log = logging.getLogger(__name__)
MAX_RESPONSE_BYTES = 4096


class DeadlineExceeded(Exception):
    """The attempt was cut short at its deadline."""


@lru_cache(maxsize=1)
def tls_context() -> ssl.SSLContext:
    """Certificates checked against certifi's authorities (as requests did) and the URL's host."""
    try:
        import certifi

        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:  # pragma: no cover - certifi comes with requests
        return ssl.create_default_context()


class _Deadline:
    """Shuts a socket down when the time is up: every blocking call on it returns at once."""

    def __init__(self, seconds: float):
        self.expired = False
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def watch(self, sock: socket.socket) -> None:
        # A duplicate of the descriptor: shutdown acts on the socket, which TLS wraps later.
        with self._lock:
            self._socket = sock.dup()
            if self.expired:
                self._shutdown()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            self._shutdown()

    def _shutdown(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        with self._lock:
            if self._socket is not None:
                self._socket.close()


def post(target: webhooks.Target, body: bytes, headers: dict[str, str], seconds: float) -> int:
    """POST `body` to the target's checked address within `seconds` in all; the answer's status.
    Raises DeadlineExceeded, OSError (ssl.SSLError included) or http.client.HTTPException."""
    with _Deadline(seconds) as deadline:
        sock = socket.socket(target.family, socket.SOCK_STREAM)
        try:
            deadline.watch(sock)
            sock.settimeout(seconds)
            sock.connect((target.address, target.port))
            if deadline.expired:  # it fired while connecting, when a shutdown cannot stop anything
                raise DeadlineExceeded
            if target.scheme == "https":
                sock = tls_context().wrap_socket(sock, server_hostname=target.host)
            connection = http.client.HTTPConnection(target.host, target.port, timeout=seconds)
            connection.sock = sock  # already connected: http.client resolves nothing
            connection.putrequest("POST", target.path, skip_host=True, skip_accept_encoding=True)
            for name, value in {
                "Host": target.host_header,
                **headers,
                "Content-Length": str(len(body)),
                "Connection": "close",
            }.items():
                connection.putheader(name, value)
            connection.endheaders(body)
            response = connection.getresponse()
            # The status is the answer: a little of the body is read, the rest never, and a body
            # that breaks (or meets the deadline) does not change it.
            with contextlib.suppress(OSError, http.client.HTTPException):
                response.read(MAX_RESPONSE_BYTES)
            response.close()
            return response.status
        except (OSError, http.client.HTTPException):
            if deadline.expired:
                raise DeadlineExceeded from None
            raise
        finally:
            sock.close()


def _payload(kind: str, object_id: uuid.UUID) -> tuple[str, bytes, str, str, uuid.UUID] | None:
    """(url, body, event, secret, organisation) for a finished job or batch with a webhook, else None."""
    with session_scope() as session:
        if kind == "unknown":
            found = unknowns.recurring_event(session, object_id)
            if found is None:
                return None
            organisation_id, url, document = found
            event = "unknown.recurring"
        elif kind == "batch":
            batch = session.get(Batch, object_id)
            if batch is None or not batch.webhook_url:
                return None
            organisation_id, url, document = batch.organisation_id, batch.webhook_url, batch_document(session, batch)
            event = f"batch.{document['status']}"
        else:
            job = session.get(Job, object_id)
            if job is None or not job.webhook_url or not job.status.finished:
                return None
            organisation_id, url, document = job.organisation_id, job.webhook_url, job_document(job)
            event = f"job.{job.status.value}"
        secret = webhooks.secret_of(session, organisation_id)
        body = json.dumps(document, separators=(",", ":")).encode()
        return url, body, event, secret, organisation_id


def deliver(
    task,
    object_id: str,
    delivery_id: str,
    kind: str = "job",
    organisation_id: str | None = None,
    *,
    settings: Settings,
) -> str | None:
    """One attempt, under the task's settings; retried through `task.retry` while attempts are left.
    Returns why the delivery ended without a 2xx answer, None when it was answered (or there is
    nothing to deliver)."""
    payload = _payload(kind, uuid.UUID(object_id))
    if payload is None:
        if organisation_id:
            webhooks.release(organisation_id, kind, object_id, delivery_id)
        return None
    url, body, event, secret, owner = payload
    organisation_id = organisation_id or str(owner)
    attempt = task.request.retries + 1
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "faceapi-webhooks/1",
        "X-FaceAPI-Event": event,
        "X-FaceAPI-Delivery": delivery_id,
        "X-FaceAPI-Timestamp": timestamp,
        "X-FaceAPI-Signature": webhooks.signature(secret, timestamp, body),
    }
    status_code, error, final = None, None, False
    try:
        # Checked again at delivery time (DNS may point elsewhere by now), and connected to the
        # very address checked.
        target = webhooks.resolve(url, settings=settings)
        status_code = post(target, body, headers, settings.webhook_timeout_seconds)
        final = 200 <= status_code < 300
    except ServiceError as refused:
        error, final = refused.message, True  # never retried: the address is not allowed
    except DeadlineExceeded:
        error = "deadline_exceeded"
        log.warning(
            "webhook %s for %s %s: attempt %d cut short after %g s",
            delivery_id,
            kind,
            object_id,
            attempt,
            settings.webhook_timeout_seconds,
        )
    except (OSError, http.client.HTTPException) as failure:
        error = type(failure).__name__
    with session_scope() as session:
        webhooks.log_attempt(
            session,
            kind,
            uuid.UUID(object_id),
            {
                "delivery_id": delivery_id,
                "attempt": attempt,
                "at": now().isoformat(),
                "status_code": status_code,
                "error": error,
            },
        )
    if final or attempt >= settings.webhook_max_attempts:
        log.info(
            "webhook %s for %s %s ended after %d attempt(s): %s",
            delivery_id,
            kind,
            object_id,
            attempt,
            status_code or error,
        )
        webhooks.release(organisation_id, kind, object_id, delivery_id)
        if status_code is not None and 200 <= status_code < 300:
            return None
        answer = f"HTTP {status_code}" if status_code is not None else error
        return f"{kind} {object_id}: {url} not delivered after {attempt} attempt(s): {answer}"
    backoff = settings.webhook_retry_base_seconds * 2 ** (attempt - 1)
    raise task.retry(countdown=backoff * random.uniform(0.5, 1.5))
