"""Typed results, mirroring the service's contract (web/schemas.py, /api/v1/openapi.json).

The models accept fields they do not know (a newer server may add some) and keep them
(`model.model_extra`); enum values (roles, statuses, job types) are plain strings for the same
reason. Every model has `.model_dump()` / `.model_dump_json()` for printing or storing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

JOB_ENDED = ("succeeded", "failed")
BATCH_ENDED = ("succeeded", "partial", "failed")


class Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


# --- errors and tokens --------------------------------------------------------------------------


class ErrorDetail(Model):
    """An error document's body: `code`, `message` and, for some codes, facts to act on."""

    code: str
    message: str = ""


class Tokens(Model):
    access_token: str
    refresh_token: str | None = None
    token_type: str = "Bearer"
    expires_in: int | None = None


class Account(Model):
    id: str
    email: str
    role: str
    created_at: datetime | None = None


class Page(Model):
    next_cursor: str | None = None


class AccountPage(Page):
    items: list[Account]


class AuditEvent(Model):
    id: str
    at: datetime
    actor_id: str | None = None
    actor_email: str | None = None
    action: str
    target_type: str | None = None
    target_id: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class AuditPage(Page):
    items: list[AuditEvent]


class WebhookSecret(Model):
    secret: str


class ApiKey(Model):
    """An API key as listed; `key` (the secret, `fk_...`) is present only in the creation answer."""

    id: str
    name: str
    role: str
    galleries: list[str] | None = None
    prefix: str | None = None
    created_by: str | None = None
    created_at: datetime | None = None
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    key: str | None = None


class ApiKeyList(Model):
    items: list[ApiKey]


# --- galleries, persons, faces -----------------------------------------------------------------


class UnknownsSetting(Model):
    """A gallery's recurring-unknowns pool: off unless enabled (docs/UNKNOWNS.md)."""

    enabled: bool = False
    retention_days: int = 30


class Gallery(Model):
    id: str
    name: str
    owner_id: str | None = None
    person_count: int = 0
    match_threshold: float | None = None
    unknowns: UnknownsSetting = Field(default_factory=UnknownsSetting)
    created_at: datetime | None = None


class GalleryPage(Page):
    items: list[Gallery]


class Face(Model):
    id: str
    model: str
    det_score: float
    bbox: list[float]
    quality: dict[str, float] | None = None
    photo_sha256_prefix: str | None = None
    crop_url: str | None = None  # its aligned 112x112 crop (JPEG): Client.get_face_crop
    created_at: datetime | None = None


class FaceList(Model):
    items: list[Face]


class ConsentRecord(Model):
    given_at: datetime | None = None
    given_by: str | None = None


class Person(Model):
    id: str
    name: str
    external_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    gallery: str
    account_id: str | None = None
    consent: ConsentRecord | None = None
    created_at: datetime | None = None
    face_count: int = 0
    faces: list[Face] | None = None


class PersonPage(Page):
    items: list[Person]


class Accepted(Model):
    """A submission's 202: the job to wait for (and, for an enrollment, the person it creates)."""

    job_id: str
    person_id: str | None = None


class BatchAccepted(Model):
    batch_id: str
    total: int


# --- job results ---------------------------------------------------------------------------------


class EnrollResult(Model):
    person_id: str
    face_id: str
    det_score: float
    bbox: list[float]
    faces_detected: int | None = None
    quality: dict[str, float] | None = None
    duplicate: bool = False
    consistency: float | None = None
    # Other persons of the gallery this face matches above its threshold: one face, two names?
    possible_duplicate_of: list[dict[str, Any]] = Field(default_factory=list)


class Match(Model):
    person_id: str
    name: str
    external_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    similarity: float


class UnknownSighting(Model):
    id: int
    sightings: int
    first_seen: datetime


class HeadPose(Model):
    """Degrees: yaw positive when the nose points to the photo's right, pitch positive when the
    face is turned up, roll positive when tilted clockwise."""

    yaw: float
    pitch: float
    roll: float


class DetectedFace(Model):
    """A face as detection describes it: `keypoints` maps left_eye, right_eye, nose, mouth_left and
    mouth_right (as seen in the photo) to [x, y]; `landmarks_106` only when asked for."""

    bbox: list[float]
    det_score: float
    keypoints: dict[str, list[float]] | None = None
    pose: HeadPose | None = None
    quality: dict[str, float] = Field(default_factory=dict)
    quality_for_recognition: Literal["high", "medium", "low"] | str | None = None
    landmarks_106: list[list[float]] | None = None


class DetectResult(Model):
    faces: list[DetectedFace]
    faces_detected: int = 0
    detector: str | None = None


class RecognizedFace(DetectedFace):
    matches: list[Match] = Field(default_factory=list)
    # In a gallery with recurring unknowns on, an unmatched face's stranger: its stable id there.
    unknown: UnknownSighting | None = None

    @property
    def best(self) -> Match | None:
        return self.matches[0] if self.matches else None


class RecognizedPhoto(Model):
    """One photo of a recognition of several: its faces, or why it has none (`error`: it could not
    be read, or shows no face; the job's other photos are unaffected)."""

    faces: list[RecognizedFace] = Field(default_factory=list)
    error: ErrorDetail | None = None


class RecognizeResult(Model):
    # One photo: its faces. Several photos (`recognize_many`): `photos`, in the order sent.
    faces: list[RecognizedFace] = Field(default_factory=list)
    photos: list[RecognizedPhoto] | None = None
    threshold: float
    threshold_source: str | None = None
    gallery_faces: int | None = None
    expected_fpir: float | None = None
    model: str | None = None

    def photo_result(self, index: int) -> RecognizeResult:
        """Photo `index` of a recognition of several as a result of its own (as `recognize` returns)."""
        photos = self.photos or []
        return self.model_copy(update={"faces": photos[index].faces, "photos": None})


class SearchResult(Model):
    """POST /search: the persons a stored face matches (the face itself left out)."""

    face_id: str
    person_id: str
    gallery: str
    matches: list[Match]
    threshold: float
    threshold_source: str | None = None
    gallery_faces: int | None = None
    expected_fpir: float | None = None
    model: str | None = None

    @property
    def best(self) -> Match | None:
        return self.matches[0] if self.matches else None


class ComparedFace(Model):
    bbox: list[float]
    det_score: float
    faces_detected: int | None = None


class VerifyResult(Model):
    similarity: float
    same_person: bool
    threshold: float
    person_id: str | None = None
    model: str | None = None
    faces: dict[str, ComparedFace] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


class Deliveries(Model):
    url: str
    deliveries: list[dict[str, Any]] = Field(default_factory=list)


_RESULTS: dict[str, type[Model]] = {
    "enroll": EnrollResult,
    "recognize": RecognizeResult,
    "verify": VerifyResult,
    "detect": DetectResult,
}


class Job(Model):
    """A job (GET /api/v1/jobs/{id}); `result` is typed by `type`. A submission answered with
    `?wait=N` also carries `job_id` (and `person_id`)."""

    id: str
    type: str
    status: str
    gallery: str | None = None
    person_id: str | None = None
    batch_id: str | None = None
    index: int | None = None
    file: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: EnrollResult | RecognizeResult | VerifyResult | DetectResult | dict[str, Any] | None = None
    error: ErrorDetail | None = None
    timings_ms: dict[str, float] | None = None
    webhook: Deliveries | None = None

    @model_validator(mode="before")
    @classmethod
    def _typed_result(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("result"), dict):
            model = _RESULTS.get(str(data.get("type")))
            if model is not None:
                data = {**data, "result": model.model_validate(data["result"])}
        return data

    @property
    def ended(self) -> bool:
        return self.status in JOB_ENDED

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def raise_for_error(self) -> Job:
        """Raise `JobFailed` (with the job's error code and message) if the job failed; else return it."""
        if self.status == "failed":
            from faceapi_client.errors import JobFailed

            raise JobFailed(self)
        return self


class EnrollJob(Job):
    result: EnrollResult | None = None


class RecognizeJob(Job):
    result: RecognizeResult | None = None


class VerifyJob(Job):
    result: VerifyResult | None = None


class DetectJob(Job):
    result: DetectResult | None = None


class JobPage(Page):
    items: list[Job]


class Delivery(Model):
    delivery_id: str


# --- batches ---------------------------------------------------------------------------------------


class BatchItem(Model):
    index: int | None = None
    file: str | None = None
    name: str | None = None
    external_id: str | None = None
    person_id: str | None = None
    job_id: str
    status: str
    face_id: str | None = None
    faces_detected: int | None = None
    duplicate: bool | None = None
    error: ErrorDetail | None = None

    @property
    def ended(self) -> bool:
        return self.status in JOB_ENDED


class Batch(Model):
    id: str
    status: Literal["queued", "running", "succeeded", "partial", "failed"] | str
    gallery: str
    total: int
    succeeded: int = 0
    failed: int = 0
    created_at: datetime | None = None
    items: list[BatchItem] | None = None
    webhook: Deliveries | None = None

    @property
    def ended(self) -> bool:
        return self.status in BATCH_ENDED


class BatchPage(Page):
    items: list[Batch]


# --- probes ----------------------------------------------------------------------------------------


class Health(Model):
    status: str
    checks: dict[str, str] | None = None


class UnknownGroup(Model):
    """A recurring stranger of a gallery."""

    id: int
    faces: int
    sightings: int
    first_seen: datetime
    last_seen: datetime
    sources: list[str] = Field(default_factory=list)
    recurring: bool = False
    sample_crops: list[str] = Field(default_factory=list)


class UnknownGroupPage(Model):
    items: list[UnknownGroup]
    total: int


class UnknownFace(Model):
    id: str
    unknown_id: int
    seen_at: datetime
    source: str | None = None
    job_id: str | None = None
    det_score: float
    bbox: list[float]
    quality: dict[str, Any] | None = None
    crop_url: str


class UnknownGroupFaces(UnknownGroup):
    items: list[UnknownFace]


class UnknownEnrolled(Model):
    person_id: str
    faces_enrolled: int
    faces_left_out: int
