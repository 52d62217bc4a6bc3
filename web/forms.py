"""Parsing request input into typed values, with a clear 4xx error for anything off."""

from __future__ import annotations

import difflib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from flask import request

from config import get_settings
from domain.errors import ServiceError, file_too_large
from domain.images import ImageInfo, validate_image
from web.logs import request_stage
from web.pagination import decode_cursor

GALLERY_NAME = re.compile(r"^[\w.\-]{1,100}$")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
PERSON_FIELDS = {"name", "external_id", "metadata"}


@dataclass(frozen=True)
class Upload:
    data: bytes
    info: ImageInfo


def bad_request(code: str, message: str, **details: Any) -> ServiceError:
    return ServiceError(code, message, status=400, **details)


# Names clients commonly send for our fields, which spelling similarity alone would not find.
_ALIASES = {
    "file": ("image", "images", "archive"),
    "photo": ("image", "images"),
    "picture": ("image", "images"),
    "img": ("image", "images"),
    "zip": ("archive",),
    "gallery_name": ("gallery",),
}


def _suggestion(name: str, allowed: set[str]) -> str | None:
    close = difflib.get_close_matches(name, allowed, n=1)
    if close:
        return close[0]
    return next((alias for alias in _ALIASES.get(name.lower(), ()) if alias in allowed), None)


def _unknown(names: set[str], allowed: set[str], what: str) -> ServiceError | None:
    unknown = sorted(str(name) for name in names - allowed)
    if not unknown:
        return None
    hints = []
    for name in unknown:
        guess = _suggestion(name, allowed)
        hints.append(f"'{name}' (did you mean '{guess}'?)" if guess else f"'{name}'")
    return bad_request(
        f"unknown_{what}",
        f"Unknown {what.replace('_', ' ')}(s): {', '.join(hints)}. Expected: {', '.join(sorted(allowed))}.",
    )


def reject_unknown_fields(allowed: set[str]) -> None:
    """A misspelled optional field must not be silently ignored."""
    if error := _unknown(set(request.form) | set(request.files), allowed, "field"):
        raise error


def reject_unknown_query(allowed: set[str]) -> None:
    """Unknown query parameters are refused like unknown form fields (`?galery=` must not list `default`)."""
    if error := _unknown(set(request.args), allowed, "query_parameter"):
        raise error


def bool_field(name: str) -> bool:
    raw = (request.form.get(name) or "").strip().lower()
    if raw in ("", "false", "0", "no"):
        return False
    if raw in ("true", "1", "yes"):
        return True
    raise bad_request("invalid_field", f"The field '{name}' must be true or false.")


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


def valid_gallery_name(name: str) -> str:
    if not GALLERY_NAME.match(name):
        raise bad_request(
            "invalid_field", "The gallery name may hold letters, digits, '_', '.' and '-' (1-100 characters)."
        )
    return name


def gallery_field() -> str:
    return valid_gallery_name(text_field("gallery", max_length=100) or "default")


def _clean_text(name: str, value: Any, max_length: int, *, nullable: bool) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value.strip():
        raise bad_request("invalid_field", f"'{name}' must be a non-empty string{' or null' if nullable else ''}.")
    value = value.strip()
    if len(value) > max_length or _CONTROL_CHARS.search(value):
        raise bad_request("invalid_field", f"'{name}' must be at most {max_length} characters, no control characters.")
    return value


def person_changes() -> dict[str, Any]:
    """A PATCH body for a person: `name`, `external_id` (null removes it), `metadata` (a JSON
    object of at most PERSON_METADATA_MAX_BYTES once serialised)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not body:
        raise bad_request("invalid_json", "Send a JSON object with name, external_id and/or metadata.")
    if error := _unknown(set(body), PERSON_FIELDS, "field"):
        raise error
    changes: dict[str, Any] = {}
    if "name" in body:
        changes["name"] = _clean_text("name", body["name"], 200, nullable=False)
    if "external_id" in body:
        changes["external_id"] = _clean_text("external_id", body["external_id"], 200, nullable=True)
    if "metadata" in body:
        limit = get_settings().person_metadata_max_bytes
        if not isinstance(body["metadata"], dict):
            raise bad_request("invalid_field", "'metadata' must be a JSON object.")
        if len(json.dumps(body["metadata"])) > limit:
            raise bad_request("invalid_field", f"'metadata' must be at most {limit} bytes as JSON.")
        changes["metadata"] = body["metadata"]
    return changes


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
        raise file_too_large(limit)
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


def page_cursor() -> str | None:
    """The `cursor` query argument, checked first: a bad cursor is a 400 whatever else is wrong."""
    cursor = request.args.get("cursor")
    if cursor:
        decode_cursor(cursor)
    return cursor


def webhook_field() -> str | None:
    """An optional `webhook_url`, refused (400) if the SSRF guard does not let it through."""
    from domain.webhooks import check_url

    url = text_field("webhook_url", max_length=2000)
    return check_url(url) if url else None
