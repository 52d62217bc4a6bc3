"""Typed exceptions. Every error the API answers is `{"error": {"code", "message", ...}}`; the
exception carries the code, the message and every extra field (`err.person_id`,
`err.details["best_similarity"]`), and its class follows the HTTP status."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import Any


class FaceAPIError(Exception):
    """Base of every error this package raises. `code` is stable and machine-readable."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.details: dict[str, Any] = dict(details or {})
        self.headers: dict[str, str] = dict(headers or {})

    def __getattr__(self, name: str) -> Any:
        # Extra fields of the error document: err.person_id, err.best_similarity, err.file ...
        if not name.startswith("_"):
            details = self.__dict__.get("details") or {}
            if name in details:
                return details[name]
        raise AttributeError(name)

    @property
    def request_id(self) -> str | None:
        return self.headers.get("x-request-id")

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __repr__(self) -> str:
        status = f" status={self.status}" if self.status is not None else ""
        return f"{type(self).__name__}({self.code!r}, {self.message!r}{status})"


class APIError(FaceAPIError):
    """The API answered with an error status."""


class BadRequest(APIError):
    """400: the request was refused (invalid_field, missing_field, duplicate_file, ...)."""


class AuthenticationError(APIError):
    """401: wrong email or password, or a token or API key that is expired, revoked or invalid."""


class PermissionDenied(APIError):
    """403: the role (or the API key's scope) does not allow this."""


class NotFound(APIError):
    """404: no such person, gallery, job, batch or key, or the route does not exist."""


class Conflict(APIError):
    """409: person_exists, gallery_exists, idempotency_key_reused, job_not_cancellable, ..."""


class PayloadTooLarge(APIError):
    """413: a photo or request over the limit."""


class UnsupportedMediaType(APIError):
    """415: the upload is not a JPEG, PNG or WebP."""


class RateLimited(APIError):
    """429 after every retry: `retry_after` says how long the server asked to wait."""

    @property
    def retry_after(self) -> float | None:
        return retry_after_seconds(self.headers.get("retry-after"))


class ServerError(APIError):
    """5xx: the service failed or is unavailable (503 queue_unavailable, database_unavailable)."""


class ServiceUnavailable(ServerError):
    """503 after every retry."""


class TransportError(FaceAPIError):
    """The service could not be reached, or the connection broke (code `connection_error` or `timeout`)."""


class JobFailed(FaceAPIError):
    """A job ended `failed`: the code and message are the job's error (no_face, face_mismatch, ...)."""

    def __init__(self, job: Any):
        error = getattr(job, "error", None)
        extra = error.model_dump(exclude={"code", "message"}) if error is not None else {}
        super().__init__(
            error.code if error is not None else "job_failed",
            error.message if error is not None else "The job failed.",
            details=extra,
        )
        self.job = job


class WaitTimeout(FaceAPIError):
    """A job (or batch) did not end within the time the caller was willing to wait."""


class WebhookVerificationError(FaceAPIError):
    """A webhook delivery whose signature, timestamp or body does not check out."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    429: RateLimited,
    503: ServiceUnavailable,
}


def error_class(status: int) -> type[APIError]:
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else APIError


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds (it may be a number of seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
