"""Webhook delivery: sign, POST, log the attempt, and retry with exponential backoff and jitter."""

from __future__ import annotations

import json
import logging
import random
import time
import uuid

import requests

from config import get_settings
from domain import webhooks
from domain.batches import batch_document
from domain.db import session_scope
from domain.errors import ServiceError
from domain.jobs import job_document, now
from domain.models import Batch, Job

log = logging.getLogger(__name__)


def _payload(kind: str, object_id: uuid.UUID) -> tuple[str, bytes, str, str] | None:
    """(url, body, event, secret) for a finished job or batch with a webhook, else None."""
    with session_scope() as session:
        if kind == "batch":
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
        return url, json.dumps(document, separators=(",", ":")).encode(), event, secret


def deliver(task, object_id: str, delivery_id: str, kind: str = "job") -> None:
    settings = get_settings()
    payload = _payload(kind, uuid.UUID(object_id))
    if payload is None:
        return
    url, body, event, secret = payload
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
        webhooks.check_url(url)  # again at delivery time: DNS may point elsewhere by now
        response = requests.post(
            url, data=body, headers=headers, timeout=settings.webhook_timeout_seconds, allow_redirects=False
        )
        status_code = response.status_code
        final = 200 <= status_code < 300
    except ServiceError as refused:
        error, final = refused.message, True  # never retried: the address is not allowed
    except requests.RequestException as failure:
        error = type(failure).__name__
    with session_scope() as session:
        webhooks.log_attempt(
            session,
            Batch if kind == "batch" else Job,
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
            "webhook %s for %s %s ended after %d attempt(s): %s", delivery_id, kind, object_id, attempt, status_code
        )
        return
    backoff = settings.webhook_retry_base_seconds * 2 ** (attempt - 1)
    raise task.retry(countdown=backoff * random.uniform(0.5, 1.5))
