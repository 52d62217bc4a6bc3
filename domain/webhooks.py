"""Webhooks: the SSRF guard, the signature, and the delivery log.

A delivery POSTs the job document (the same JSON as GET /api/v1/jobs/{id}) with:
  X-FaceAPI-Event: job.succeeded | job.failed
  X-FaceAPI-Delivery: a UUID, the same for every retry of one delivery
  X-FaceAPI-Timestamp: unix seconds
  X-FaceAPI-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import socket
import uuid
from urllib.parse import urlsplit

from sqlalchemy import bindparam, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from config import get_settings
from domain.errors import ServiceError
from domain.models import Batch, Job, Organisation


def invalid_url(message: str) -> ServiceError:
    return ServiceError("invalid_webhook_url", message, status=400)


def _forbidden_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def check_url(url: str) -> str:
    """Refuse URLs that are not http(s) or that resolve to loopback, private, link-local or
    metadata addresses, unless the host is in WEBHOOK_ALLOWED_HOSTS. Returns the URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2000:
        raise invalid_url("The webhook URL must be an http(s) URL with a host.")
    if parts.username or parts.password:
        raise invalid_url("The webhook URL must not carry credentials.")
    allowed = get_settings().webhook_allowed_hosts
    host = parts.hostname.lower()
    if host in allowed:
        return url
    try:
        infos = socket.getaddrinfo(
            host, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
        )
    except (socket.gaierror, UnicodeError, ValueError):
        raise invalid_url(f"The webhook host '{host}' does not resolve.") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if str(address) not in allowed and _forbidden_address(address):
            raise invalid_url(
                f"The webhook URL points to a loopback, private, link-local or metadata address ({address}). "
                f"If '{host}' is your own receiver on such a network, the operator can allow it with "
                "WEBHOOK_ALLOWED_HOSTS."
            )
    return url


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def secret_of(session: Session, organisation_id: uuid.UUID) -> str:
    """The organisation's webhook signing secret, created on first use."""
    organisation = session.get(Organisation, organisation_id)
    if not organisation.webhook_secret:
        organisation.webhook_secret = secrets.token_urlsafe(32)
        session.flush()
    return organisation.webhook_secret


def rotate_secret(session: Session, organisation_id: uuid.UUID) -> str:
    organisation = session.get(Organisation, organisation_id)
    organisation.webhook_secret = secrets.token_urlsafe(32)
    session.flush()
    return organisation.webhook_secret


def log_attempt(session: Session, model: type[Job] | type[Batch], object_id, entry: dict) -> None:
    """Append one attempt to a job's or batch's delivery log (atomically, in the database)."""
    session.execute(
        update(model)
        .where(model.id == object_id)
        .values(deliveries=model.deliveries.op("||")(bindparam("entry", [entry], type_=JSONB)))
    )
