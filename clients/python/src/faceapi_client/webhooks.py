"""Checking a webhook delivery before trusting it.

Each delivery is a POST of the job (or batch) document with:

    X-FaceAPI-Event      job.succeeded | job.failed | batch.succeeded | batch.partial | batch.failed
    X-FaceAPI-Delivery   one id per delivery, the same across its retries (deduplicate on it)
    X-FaceAPI-Timestamp  unix seconds
    X-FaceAPI-Signature  sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>

    from faceapi_client import verify_webhook, WebhookVerificationError

    @app.post("/hook")
    def hook():
        try:
            event = verify_webhook(SECRET, request.get_data(), request.headers)
        except WebhookVerificationError:
            abort(401)
        if event.job is not None and event.job.succeeded: ...

Pass the raw body exactly as received (not re-serialised JSON): the signature covers its bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from faceapi_client import models
from faceapi_client.errors import WebhookVerificationError

SIGNATURE_HEADER = "X-FaceAPI-Signature"
TIMESTAMP_HEADER = "X-FaceAPI-Timestamp"
EVENT_HEADER = "X-FaceAPI-Event"
DELIVERY_HEADER = "X-FaceAPI-Delivery"
DEFAULT_TOLERANCE_SECONDS = 300


@dataclass(frozen=True)
class WebhookEvent:
    """A verified delivery: its event, delivery id, timestamp and the document it carries."""

    event: str
    delivery_id: str | None
    timestamp: int
    payload: dict[str, Any]

    @property
    def job(self) -> models.Job | None:
        """The job document (job.* events), typed."""
        if not self.event.startswith("job."):
            return None
        from faceapi_client.client import parse_job

        return parse_job(self.payload)

    @property
    def batch(self) -> models.Batch | None:
        """The batch document (batch.* events), typed."""
        return models.Batch.model_validate(self.payload) if self.event.startswith("batch.") else None


def sign_webhook(secret: str | bytes, timestamp: int | str, body: bytes) -> str:
    """The X-FaceAPI-Signature value for `body` sent at `timestamp`."""
    key = secret.encode() if isinstance(secret, str) else secret
    message = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(key, message, hashlib.sha256).hexdigest()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # a plain dict with other capitalisation
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def verify_webhook(
    secret: str | bytes | list[str | bytes],
    body: bytes | str,
    headers: Mapping[str, str],
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> WebhookEvent:
    """Check a delivery's signature and freshness and return it parsed; raise
    WebhookVerificationError (`missing_signature`, `invalid_timestamp`, `stale_timestamp`,
    `invalid_signature`, `invalid_body`) otherwise. `secret` may be a list (the old and the new
    secret while rotating). `tolerance` (seconds) bounds the clock difference either way:
    an older delivery may be a replay."""
    raw = body.encode() if isinstance(body, str) else bytes(body)
    signature = _header(headers, SIGNATURE_HEADER)
    timestamp = _header(headers, TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise WebhookVerificationError(
            "missing_signature", f"The delivery has no {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header."
        )
    try:
        sent_at = int(timestamp.strip())
    except ValueError:
        raise WebhookVerificationError("invalid_timestamp", f"{TIMESTAMP_HEADER} is not unix seconds.") from None
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance:
        raise WebhookVerificationError(
            "stale_timestamp",
            f"The delivery was signed {int(current - sent_at)} s ago, outside the {tolerance:g} s tolerance "
            "(a replay, or a clock out of step).",
        )
    secrets = secret if isinstance(secret, list) else [secret]
    if not any(hmac.compare_digest(sign_webhook(s, timestamp.strip(), raw), signature.strip()) for s in secrets):
        raise WebhookVerificationError("invalid_signature", "The signature does not match the body and the secret.")
    try:
        payload = json.loads(raw)
    except ValueError:
        raise WebhookVerificationError("invalid_body", "The signed body is not JSON.") from None
    return WebhookEvent(
        event=_header(headers, EVENT_HEADER) or "",
        delivery_id=_header(headers, DELIVERY_HEADER),
        timestamp=sent_at,
        payload=payload,
    )
