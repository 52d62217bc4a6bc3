"""Webhooks: the SSRF guard, the signature, the delivery log, and the bounds on deliveries.

A delivery POSTs the job document (the same JSON as GET /api/v1/jobs/{id}) with:
  X-FaceAPI-Event: job.succeeded | job.failed
  X-FaceAPI-Delivery: a UUID, the same for every retry of one delivery
  X-FaceAPI-Timestamp: unix seconds
  X-FaceAPI-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>

The SSRF guard resolves the host once and refuses any address that is not globally routable
(`ipaddress`'s is_global, plus multicast, reserved and the 6to4 relay anycast 192.88.99.0/24; an
IPv4 address inside an IPv6 one, ::ffff:a.b.c.d, 6to4 2002::/16 or NAT64 64:ff9b::/96, is judged
as that IPv4 address). `resolve` returns the address it checked: the delivery connects to that
very address (workers/webhooks.py), so DNS cannot answer differently in between.

WEBHOOK_ALLOWED_HOSTS lets chosen hosts or addresses through the guard: `host` on ports 80 and
443, `host:port` on that port, `host:*` on any port (an IPv6 address in brackets: `[fd00::1]:8080`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
import socket
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import bindparam, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from config import Settings
from domain.errors import ServiceError
from domain.models import Batch, Gallery, Job, Organisation, UnknownGroup

log = logging.getLogger(__name__)
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# Not globally routable, though Python's is_global says otherwise (3.11): the 6to4 relay anycast,
# and IETF protocol assignments beyond the few it lists.
_NOT_GLOBAL = (ipaddress.ip_network("192.88.99.0/24"), ipaddress.ip_network("192.0.0.0/24"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def invalid_url(message: str) -> ServiceError:
    return ServiceError("invalid_webhook_url", message, status=400)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64), which is where it leads."""
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if address.sixtofour:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def forbidden_address(address: Address) -> bool:
    """Whether a webhook may not be delivered to this address: anything not globally routable."""
    if isinstance(address, ipaddress.IPv6Address) and (inner := _embedded_ipv4(address)) is not None:
        if forbidden_address(inner):
            return True
        if address.ipv4_mapped or address in _NAT64:
            return False  # ::ffff:a.b.c.d is a.b.c.d itself; NAT64 leads to it (Python calls ::/8 reserved)
    return (
        not address.is_global
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or address.is_loopback
        or address.is_link_local
        or address.is_private
        or any(address in network for network in _NOT_GLOBAL if network.version == address.version)
    )


def _allowed_entry(entry: str) -> tuple[str, int | str | None]:
    """`host` -> (host, None); `host:port` -> (host, port); `host:*` -> (host, "*"); IPv6 in brackets."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    else:  # a bare name, or a bare IPv6 address
        host, port = entry, None
    if port is None or port == "*":
        return host, port
    return host, int(port) if port.isdigit() else -1


def allowed(host: str, port: int, allowed_hosts: tuple[str, ...]) -> bool:
    """Whether `allowed_hosts` (WEBHOOK_ALLOWED_HOSTS) let `host` (a name or an address) through on `port`."""
    for entry in allowed_hosts:
        name, entry_port = _allowed_entry(entry)
        if name != host:
            continue
        if entry_port == "*" or entry_port == port or (entry_port is None and port in (80, 443)):
            return True
    return False


@dataclass(frozen=True)
class Target:
    """Where a webhook goes: its URL's parts and the one address the guard checked."""

    scheme: str
    host: str
    port: int
    path: str  # with the query
    address: str
    family: int

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def resolve(url: str, *, settings: Settings) -> Target:
    """Check a webhook URL and resolve its host, once: refused (400 invalid_webhook_url) unless it
    is http(s) without credentials and every address it resolves to is globally routable or
    allowed by `settings.webhook_allowed_hosts`. Returns the first address, the one to connect to."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2000:
        raise invalid_url("The webhook URL must be an http(s) URL with a host.")
    if parts.username or parts.password:
        raise invalid_url("The webhook URL must not carry credentials.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise invalid_url("The webhook URL's port is not a port number.") from None
    host = parts.hostname.lower()
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError):
        raise invalid_url(f"The webhook host '{host}' does not resolve.") from None
    allowed_hosts = settings.webhook_allowed_hosts
    host_allowed = allowed(host, port, allowed_hosts)
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not host_allowed and not allowed(str(address), port, allowed_hosts) and forbidden_address(address):
            raise invalid_url(
                f"The webhook URL points to an address that is not publicly routable ({address}: loopback, "
                f"private, link-local, shared, metadata or reserved). If '{host}' is your own receiver on such "
                f"a network, the operator can allow it with WEBHOOK_ALLOWED_HOSTS ('{host}' allows ports 80 "
                f"and 443, '{host}:{port}' this port)."
            )
    if not infos:
        raise invalid_url(f"The webhook host '{host}' does not resolve.")
    path = parts.path or "/"
    return Target(
        scheme=parts.scheme,
        host=host,
        port=port,
        path=f"{path}?{parts.query}" if parts.query else path,
        address=infos[0][4][0],
        family=infos[0][0],
    )


def check_url(url: str, *, settings: Settings) -> str:
    """Refuse a webhook URL the guard does not let through (see `resolve`). Returns the URL."""
    resolve(url, settings=settings)
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


# What a delivery is about, by its kind: a job, a batch, or a stranger who became recurring
# (`unknown.recurring`, domain/unknowns.py); each keeps its own delivery log.
DELIVERY_MODELS: dict[str, type[Job] | type[Batch] | type[UnknownGroup]] = {
    "job": Job,
    "batch": Batch,
    "unknown": UnknownGroup,
}


def log_attempt(session: Session, kind: str, object_id, entry: dict) -> None:
    """Append one attempt to a job's, batch's or unknown group's delivery log (atomically)."""
    model = DELIVERY_MODELS[kind]
    session.execute(
        update(model)
        .where(model.id == object_id)
        .values(deliveries=model.deliveries.op("||")(bindparam("entry", [entry], type_=JSONB)))
    )


# --- bounds on deliveries: one in flight per job or batch, a cap per organisation --------------

IN_FLIGHT_PREFIX = "faceapi:webhooks:in-flight:"  # per job or batch: the delivery id in flight
PENDING_PREFIX = "faceapi:webhooks:pending:"  # per organisation: delivery id -> when it expires
# Atomically: forget expired entries, refuse at the cap, else add the delivery.
_RESERVE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""
_RELEASE_IN_FLIGHT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def delivery_lifetime(settings: Settings) -> int:
    """Seconds a delivery may take with all its attempts and backoffs (jitter included), plus an
    hour in the queue: after that its bookkeeping expires, should its worker have died."""
    attempts = settings.webhook_max_attempts
    backoffs = settings.webhook_retry_base_seconds * 1.5 * (2 ** max(0, attempts - 1) - 1)
    return int(attempts * (settings.webhook_timeout_seconds + 5) + backoffs + 3600)


def _in_flight_key(kind: str, object_id: uuid.UUID | str) -> str:
    return f"{IN_FLIGHT_PREFIX}{kind}:{object_id}"


def reserve(
    organisation_id: uuid.UUID | str,
    kind: str,
    object_id: uuid.UUID | str,
    delivery_id: str,
    *,
    exclusive: bool,
    settings: Settings,
) -> None:
    """Count a delivery as pending for its organisation (at most WEBHOOK_MAX_PENDING: else 429
    `too_many_pending_deliveries`) and as the one in flight for its job or batch. An exclusive one
    (a redelivery) is refused (409 `delivery_in_flight`) while another is in flight."""
    from domain.notifications import redis_client

    client, lifetime = redis_client(), delivery_lifetime(settings)
    in_flight = _in_flight_key(kind, object_id)
    if not client.set(in_flight, delivery_id, ex=lifetime, nx=exclusive):
        raise ServiceError(
            "delivery_in_flight",
            "A delivery of this webhook is still under way (with its retries); see webhook.deliveries.",
            status=409,
        )
    expires = time.time() + lifetime
    limit = settings.webhook_max_pending
    if not client.eval(
        _RESERVE, 1, PENDING_PREFIX + str(organisation_id), time.time(), limit, expires, delivery_id, lifetime
    ):
        client.eval(_RELEASE_IN_FLIGHT, 1, in_flight, delivery_id)
        raise ServiceError(
            "too_many_pending_deliveries",
            f"Your organisation has {limit} webhook deliveries under way (WEBHOOK_MAX_PENDING): "
            "its receiver is slow or down. Try again once they end.",
            status=429,
        )


def release(organisation_id: uuid.UUID | str, kind: str, object_id: uuid.UUID | str, delivery_id: str) -> None:
    """A delivery ended (delivered, refused or given up): it no longer counts."""
    from domain.notifications import redis_client

    client = redis_client()
    client.zrem(PENDING_PREFIX + str(organisation_id), delivery_id)
    client.eval(_RELEASE_IN_FLIGHT, 1, _in_flight_key(kind, object_id), delivery_id)


def organisation_of(kind: str, object_id: uuid.UUID) -> uuid.UUID | None:
    """The organisation of a job or batch (None when it is gone)."""
    from sqlalchemy import select

    from domain.db import session_scope

    with session_scope() as session:
        if kind == "unknown":
            query = (
                select(Gallery.organisation_id)
                .join(UnknownGroup, UnknownGroup.gallery_id == Gallery.id)
                .where(UnknownGroup.id == object_id)
            )
        else:
            model = DELIVERY_MODELS[kind]
            query = select(model.organisation_id).where(model.id == object_id)
        return session.execute(query).scalar_one_or_none()


def record_refusal(kind: str, object_id: uuid.UUID, refused: ServiceError) -> None:
    """A delivery that was never started (its organisation at the cap): in its delivery log."""
    from domain.db import session_scope
    from domain.jobs import now

    log.warning("webhook for %s %s not sent: %s", kind, object_id, refused.code)
    with session_scope() as session:
        log_attempt(
            session,
            kind,
            object_id,
            {"delivery_id": None, "attempt": 0, "at": now().isoformat(), "status_code": None, "error": refused.code},
        )


def start_delivery(
    object_id: uuid.UUID,
    kind: str = "job",
    organisation_id: uuid.UUID | None = None,
    *,
    redeliver: bool = False,
    settings: Settings,
) -> str | None:
    """Start a delivery of a finished job's (or batch's, or unknown group's) webhook and return its
    id, which stays the same across retries. It counts against its organisation's
    WEBHOOK_MAX_PENDING (of the caller's `settings`: the web app's or the worker's) until it ends:
    at the cap a delivery is not sent (the refusal is in its delivery log, and None returned), and
    a redelivery is refused (429), as is one while another delivery of it is under way (409)."""
    # Imported here: jobqueue builds its Celery app at first use, and most importers of this
    # module (the SSRF guard, the signature) never send.
    from jobqueue import send_webhook

    delivery_id = str(uuid.uuid4())
    if organisation_id is None:
        organisation_id = organisation_of(kind, object_id)
    if organisation_id is not None:
        try:
            reserve(organisation_id, kind, object_id, delivery_id, exclusive=redeliver, settings=settings)
        except ServiceError as refused:
            if redeliver:
                raise
            record_refusal(kind, object_id, refused)
            return None
    try:
        send_webhook(object_id, delivery_id, kind, organisation_id)
    except Exception:
        if organisation_id is not None:
            release(organisation_id, kind, object_id, delivery_id)
        raise
    return delivery_id
