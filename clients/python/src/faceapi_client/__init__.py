"""Python SDK for the face recognition service's API v1 (and the `faceapi` command line).

from faceapi_client import FaceAPI

with FaceAPI("http://127.0.0.1:8000", api_key="fk_...") as api:
    job = api.recognize("team.jpg", gallery="staff")
    for face in job.result.faces:
        print(face.bbox, face.best.name if face.best else "unknown")
"""

__version__ = "0.1.0"

from faceapi_client.client import FaceAPI, parse_job  # noqa: E402
from faceapi_client.enroll import EnrollItem, Summary, enroll_photos, folder_items, mapping_items  # noqa: E402
from faceapi_client.errors import (  # noqa: E402
    APIError,
    AuthenticationError,
    BadRequest,
    Conflict,
    FaceAPIError,
    JobFailed,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    TransportError,
    UnsupportedMediaType,
    WaitTimeout,
    WebhookVerificationError,
)
from faceapi_client.webhooks import WebhookEvent, sign_webhook, verify_webhook  # noqa: E402

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequest",
    "Conflict",
    "EnrollItem",
    "FaceAPI",
    "FaceAPIError",
    "JobFailed",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "ServerError",
    "ServiceUnavailable",
    "Summary",
    "TransportError",
    "UnsupportedMediaType",
    "WaitTimeout",
    "WebhookEvent",
    "WebhookVerificationError",
    "enroll_photos",
    "folder_items",
    "mapping_items",
    "parse_job",
    "sign_webhook",
    "verify_webhook",
]
