"""What request validation (web/schemas.py) leaves to the handlers: reading an uploaded photo
within its limit and checking its bytes, the webhook URL's SSRF guard, and unknown-name hints."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from werkzeug.datastructures import FileStorage

from domain.errors import ServiceError, file_too_large
from domain.images import ImageInfo, validate_image
from web.logs import request_stage
from web.settings import app_settings


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


def suggest_unknown(names: set[str], allowed: set[str], what: str) -> ServiceError:
    """400 `unknown_<what>` naming each unknown name, the likely intended one, and what is expected."""
    hints = []
    for name in sorted(names):
        guess = _suggestion(name, allowed)
        hints.append(f"'{name}' (did you mean '{guess}'?)" if guess else f"'{name}'")
    return bad_request(
        f"unknown_{what}",
        f"Unknown {what.replace('_', ' ')}(s): {', '.join(hints)}. Expected: {', '.join(sorted(allowed))}.",
    )


def read_upload(storage: FileStorage) -> Upload:
    """Read one uploaded photo (never more than the limit plus one byte) and validate its bytes."""
    limit = app_settings().max_upload_bytes
    data = storage.stream.read(limit + 1)
    if len(data) > limit:
        raise file_too_large(limit)
    with request_stage("validate"):
        return Upload(data=data, info=validate_image(data, settings=app_settings()))


def checked_webhook(url: str | None) -> str | None:
    """An optional `webhook_url`, refused (400) if the SSRF guard does not let it through."""
    from domain.webhooks import check_url

    return check_url(url, settings=app_settings()) if url else None
