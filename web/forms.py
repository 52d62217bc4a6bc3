"""Parsing request input into typed values, with a clear 4xx error for anything off."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from flask import request

from config import get_settings
from domain.errors import InvalidImage, ServiceError
from domain.images import ImageInfo, validate_image
from web.logs import request_stage

GALLERY_NAME = re.compile(r"^[\w.\-]{1,100}$")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Upload:
    data: bytes
    info: ImageInfo


def bad_request(code: str, message: str) -> ServiceError:
    return ServiceError(code, message, status=400)


def reject_unknown_fields(allowed: set[str]) -> None:
    """A misspelled optional field must not be silently ignored."""
    unknown = sorted(str(name) for name in (set(request.form) | set(request.files)) - allowed)
    if unknown:
        raise bad_request("unknown_field", f"Unknown field(s): {', '.join(unknown)}.")


def text_field(name: str, *, required: bool = False, max_length: int = 200) -> str | None:
    value = request.form.get(name)
    if value is None or not value.strip():
        if required:
            raise bad_request("missing_field", f"The field '{name}' is required.")
        return None
    value = value.strip()
    if len(value) > max_length:
        raise bad_request("invalid_field", f"The field '{name}' must be at most {max_length} characters.")
    if _CONTROL_CHARS.search(value):
        raise bad_request("invalid_field", f"The field '{name}' contains control characters.")
    return value


def uuid_field(name: str) -> uuid.UUID:
    value = text_field(name, required=True, max_length=64)
    try:
        return uuid.UUID(value)
    except ValueError:
        raise bad_request("invalid_field", f"The field '{name}' must be a UUID.") from None


def gallery_field() -> str:
    name = text_field("gallery", max_length=100) or "default"
    if not GALLERY_NAME.match(name):
        raise bad_request(
            "invalid_field", "The gallery name may hold letters, digits, '_', '.' and '-' (1-100 characters)."
        )
    return name


def number_field(name: str, kind: type, default: Any, low: Any, high: Any) -> Any:
    raw = request.form.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise bad_request("invalid_field", f"The field '{name}' must be a number.") from None
    if not (low <= value <= high) or value != value:  # value != value catches NaN
        raise bad_request("invalid_field", f"The field '{name}' must be between {low} and {high}.")
    return value


def threshold_field() -> float:
    """A request's `threshold`: the configured one unless overridden, within bounds."""
    settings = get_settings()
    return number_field("threshold", float, settings.match_threshold, settings.min_threshold, settings.max_threshold)


def require_consent() -> None:
    if (request.form.get("consent") or "").strip().lower() != "true":
        raise bad_request("consent_required", "Enrollment requires the person's consent: send consent=true.")


def image_field(name: str = "image") -> Upload:
    """Read one uploaded image (never more than the limit plus one byte) and validate it."""
    storage = request.files.get(name)
    if storage is None:
        raise bad_request("missing_field", f"The file field '{name}' is required (multipart/form-data).")
    limit = get_settings().max_upload_bytes
    data = storage.stream.read(limit + 1)
    if len(data) > limit:
        raise InvalidImage("file_too_large", f"The image is larger than {limit} bytes.", status=413)
    with request_stage("validate"):
        return Upload(data=data, info=validate_image(data, storage.mimetype))


def json_body(*, required: tuple[str, ...]) -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise bad_request("invalid_json", "The request body must be a JSON object.")
    for key in required:
        if not isinstance(body.get(key), str) or not body[key]:
            raise bad_request("missing_field", f"The field '{key}' is required and must be a string.")
    return body


def page_limit(default: int = 50, maximum: int = 200) -> int:
    try:
        limit = int(request.args.get("limit", default))
    except ValueError:
        raise bad_request("invalid_field", "limit must be an integer.") from None
    if not 1 <= limit <= maximum:
        raise bad_request("invalid_field", f"limit must be between 1 and {maximum}.")
    return limit


def webhook_field() -> str | None:
    """An optional `webhook_url`, refused (400) if the SSRF guard does not let it through."""
    from domain.webhooks import check_url

    url = text_field("webhook_url", max_length=2000)
    return check_url(url) if url else None
