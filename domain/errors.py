"""Errors with a stable machine-readable code, shared by the API (as HTTP errors) and jobs (as job errors)."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """An expected failure a client can act on. `status` is the HTTP status the API answers with."""

    status = 400

    def __init__(self, code: str, message: str, status: int | None = None, **details: Any):
        super().__init__(message)
        self.code = code
        self.message = message
        # Facts a client acts on beside the message (e.g. the existing `person_id`), JSON values.
        self.details = details
        if status is not None:
            self.status = status

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}


def megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):g} MB"


def file_too_large(limit: int) -> ServiceError:
    """One photo over MAX_UPLOAD_BYTES: one code for it wherever it arrives (413 for a single photo)."""
    return ServiceError("file_too_large", f"The photo is larger than the limit of {megabytes(limit)} per photo.", 413)


def request_too_large(photo_limit: int, batch_limit: int, json_limit: int) -> ServiceError:
    """The whole request body over its limit (multipart or JSON)."""
    return ServiceError(
        "request_too_large",
        f"The request is too large: at most {megabytes(photo_limit)} per photo, {megabytes(batch_limit)} per "
        f"batch enrollment, {json_limit // 1024} KB per JSON body.",
        413,
    )


class NotFound(ServiceError):
    status = 404


class InvalidImage(ServiceError):
    """An upload that is not an image we accept."""


class FaceError(ServiceError):
    """A job-level failure about the faces in a photo (e.g. `no_face`)."""

    status = 422
