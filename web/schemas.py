"""The API contract: every request form, query, path and body, and every response, as pydantic
models. flask-openapi3 validates each request against them before the handler runs and builds
`/api/v1/openapi.json` from the same models, so the document cannot drift from the code.

Limits come from the settings and enum values from the domain (`Role`, `JobStatus`, `JobType`):
nothing is copied by hand. A limit that is a setting (MAX_TOP_K, a threshold's range, ...) is checked
against the settings of the app validating the request (web/settings.app_settings), so an app created
with other settings enforces its own; the OpenAPI document names the setting, not a value. A model
refuses unknown fields (`extra="forbid"`), so a misspelled optional field is an error
(`unknown_field`, with a suggestion) instead of being ignored. Validation failures become the one
error document (`web/validation.py`).
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from flask_openapi3 import FileStorage
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError
from werkzeug.datastructures import FileStorage as UploadedFile

from config import env_variable
from domain.errors import ServiceError
from domain.idempotency import MAX_KEY_LENGTH
from domain.json_limits import METADATA_MAX_DEPTH, nesting_depth
from domain.models import JobStatus, JobType, Role
from web.pagination import decode_cursor
from web.settings import app_settings

# C0 and C1 controls (newlines, ANSI escapes: ESC and CSI) and the bidirectional overrides and
# isolates that make a name display as something else ("Trojan Source").
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
TEXT_MAX_LENGTH = 200


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# What a client sends for "no value" when it writes its null as text (Swagger UI's "Try it out", a
# JavaScript String(null)): an optional field reads it as left out; it is never stored as a value.
NULL_TEXT = "null"


def _text(value: str) -> str:
    value = value.strip()
    if not value:
        raise PydanticCustomError("missing_field", "The field is required and may not be blank.")
    if value == NULL_TEXT:
        raise PydanticCustomError(
            "invalid_field", "The field is the text 'null', not a value: send the value, or leave the field out."
        )
    if _CONTROL_CHARS.search(value):
        raise PydanticCustomError("invalid_field", "The field contains control characters.")
    return value


def clean_text(value: str) -> str:
    """The rules of `Text` for a value that no model parses (a batch entry's name or external_id):
    stripped, not blank, no control characters, at most TEXT_MAX_LENGTH characters. Raises
    PydanticCustomError (its `type` is the error code)."""
    if len(value) > TEXT_MAX_LENGTH:
        raise PydanticCustomError(
            "invalid_field", "The field is longer than {limit} characters.", {"limit": TEXT_MAX_LENGTH}
        )
    return _text(value)


def _consent(value: Any) -> str:
    if str(value or "").strip().lower() != "true":
        raise PydanticCustomError("consent_required", "Enrollment requires the person's consent: send consent=true.")
    return "true"


def _blank_is_none(value: Any) -> Any:
    """An optional field sent blank, or as the text 'null', is a field left out."""
    return None if isinstance(value, str) and value.strip() in ("", NULL_TEXT) else value


def _metadata_depth(value: Any) -> Any:
    """Refuse deep nesting before anything walks the value recursively (pydantic, json.dumps)."""
    if nesting_depth(value, METADATA_MAX_DEPTH) > METADATA_MAX_DEPTH:
        raise PydanticCustomError(
            "invalid_field",
            "metadata may nest objects and lists at most {limit} levels deep (the object itself is the first).",
            {"limit": METADATA_MAX_DEPTH},
        )
    return value


def _metadata(value: dict) -> dict:
    limit = app_settings().person_metadata_max_bytes
    if len(json.dumps(value)) > limit:
        raise PydanticCustomError("invalid_field", "metadata must be at most {limit} bytes as JSON.", {"limit": limit})
    return value


def _at_most(setting: str) -> AfterValidator:
    """A value at most the setting `setting` (a field of config.Settings) of the app validating the
    request; refused with pydantic's own error (`less_than_equal`), so the answer reads as a bound's."""

    def check(value: float) -> float:
        limit = getattr(app_settings(), setting)
        if value > limit:
            raise PydanticCustomError("less_than_equal", "Input should be less than or equal to {le}", {"le": limit})
        return value

    return AfterValidator(check)


def _at_least(setting: str) -> AfterValidator:
    """A value at least the setting `setting` of the app validating the request (`greater_than_equal`)."""

    def check(value: float) -> float:
        limit = getattr(app_settings(), setting)
        if value < limit:
            raise PydanticCustomError(
                "greater_than_equal", "Input should be greater than or equal to {ge}", {"ge": limit}
            )
        return value

    return AfterValidator(check)


def _setting_default(setting: str) -> Callable[[], Any]:
    """A field's default that is a setting, read from the app validating the request."""
    return lambda: getattr(app_settings(), setting)


def _defaults_to(setting: str) -> tuple[BeforeValidator, Any]:
    """A field's default: the setting `setting` of the app validating the request, when the field
    is left out or sent blank (Swagger UI's "Try it out" sends an empty form field, as does
    `curl -F top_k=`). For an Annotated type's metadata: `Annotated[int, *_defaults_to(...)]`."""
    default = _setting_default(setting)
    return BeforeValidator(lambda value: default() if _blank_is_none(value) is None else value), Field(
        default_factory=default
    )


def _named(setting: str) -> str:
    """A setting as the OpenAPI document names it: its environment variable (KeyError: no such setting)."""
    return env_variable(setting)


def _sent_or_unchanged(schema: dict[str, Any]) -> None:
    """A field that may be left out but not sent as null: the document shows no default (a null
    default would contradict its type); leaving it out leaves the value as it is."""
    schema.pop("default", None)


Text = Annotated[str, Field(max_length=TEXT_MAX_LENGTH), AfterValidator(_text)]
OptionalText = Annotated[Text | None, BeforeValidator(_blank_is_none)]


def _not_null_text(value: str) -> str:
    if value == NULL_TEXT:
        raise PydanticCustomError(
            "invalid_field", "The field is the text 'null', not a name: send the name, or leave the field out."
        )
    return value


GalleryName = Annotated[
    str,
    Field(
        pattern=r"^[\w.\-]{1,100}$",
        description="letters, digits, '_', '.' and '-'; case-sensitive",
    ),
    AfterValidator(_not_null_text),
]
Consent = Annotated[
    Literal["true"],
    BeforeValidator(_consent),
    Field(description="the person consented to being enrolled (required)"),
]
WebhookUrl = Annotated[
    Annotated[str, Field(max_length=2000)] | None,
    BeforeValidator(_blank_is_none),
    Field(description="POSTed the job (or batch) document, signed, when it ends"),
]
Force = Annotated[
    bool,
    Field(
        description="enroll even if the face does not resemble the person's, or matches another person's "
        "under ENROLL_DUPLICATE_IDENTITY=refuse (audited)"
    ),
]
# A threshold a request or a gallery sets: within MIN_THRESHOLD..MAX_THRESHOLD of the app.
BoundedThreshold = Annotated[float, Field(allow_inf_nan=False), _at_least("min_threshold"), _at_most("max_threshold")]
THRESHOLD_RANGE = f"from {_named('min_threshold')} to {_named('max_threshold')} (settings)"
Threshold = Annotated[
    BoundedThreshold | None,
    BeforeValidator(_blank_is_none),
    Field(
        description=f"cosine similarity at or above which a face matches, {THRESHOLD_RANGE}; "
        "default: derived per gallery"
    ),
]
Limit = Annotated[int, Field(ge=1, le=200, description="items per page")]


def _cursor(value: str | None) -> str | None:
    if value:
        try:
            decode_cursor(value)
        except ServiceError:
            raise PydanticCustomError("invalid_cursor", "The cursor is not valid.") from None
    return value


Cursor = Annotated[str | None, AfterValidator(_cursor), Field(description="next_cursor of the previous page")]
Metadata = Annotated[
    dict[str, Any],
    BeforeValidator(_metadata_depth),
    AfterValidator(_metadata),
    Field(
        description=f"free-form JSON object, at most {_named('person_metadata_max_bytes')} bytes "
        f"and {METADATA_MAX_DEPTH} levels of nesting"
    ),
]
Box = Annotated[list[float], Field(min_length=4, max_length=4, description="x1, y1, x2, y2 in the photo's pixels")]


def parse_target_face(value: Any) -> list[float]:
    """A target face as sent: `x,y,w,h` (text, as in a form) or a list of those four numbers (a
    manifest row); width and height positive. Raises PydanticCustomError `invalid_field`."""
    parts = value.split(",") if isinstance(value, str) else value
    try:
        if not isinstance(parts, list | tuple) or len(parts) != 4 or any(isinstance(p, bool) for p in parts):
            raise ValueError
        box = [float(part) for part in parts]
    except (TypeError, ValueError):
        box = []
    if len(box) != 4 or not all(math.isfinite(v) for v in box) or box[2] <= 0 or box[3] <= 0:
        raise PydanticCustomError(
            "invalid_field", "target_face must be x,y,w,h: four numbers in the photo's pixels, w and h above 0."
        )
    return box


def _target_face(value: Any) -> list[float] | None:
    return None if value is None else parse_target_face(value)


TargetFace = Annotated[
    str | None,
    BeforeValidator(_blank_is_none),
    AfterValidator(_target_face),
    Field(
        description="x,y,w,h of the face to enroll, in the photo's pixels: the detected face it overlaps most "
        "(IoU at least 0.5) is enrolled whatever the others (none: target_face_not_found, naming the faces found)"
    ),
]


def _file_part(value: Any) -> Any:
    if not isinstance(value, UploadedFile):
        raise PydanticCustomError("invalid_field", "must be a file part (multipart/form-data with a file name)")
    return value


File = Annotated[FileStorage, AfterValidator(_file_part)]
Image = Annotated[File, Field(description=f"JPEG, PNG or WebP, at most {_named('max_upload_bytes')} bytes")]


# --- errors -------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str = Field(description="stable machine-readable code, e.g. gallery_not_found")
    message: str = Field(description="what to fix, for a human")


class ErrorBody(BaseModel):
    """Every error: some codes add facts to act on (person_id, best_similarity, file, faces_detected)."""

    error: ErrorDetail


# --- shared parameters --------------------------------------------------------------------------


# The longest `?wait=N`: a wait holds a request thread (web/waiting.py caps how many).
MAX_WAIT_SECONDS = 30


class WaitQuery(Model):
    wait: float = Field(
        0,
        ge=0,
        le=MAX_WAIT_SECONDS,
        allow_inf_nan=False,
        description="seconds to wait for the job to end before answering",
    )


class PageQuery(Model):
    limit: Limit = 50
    cursor: Cursor = None


class IdempotencyHeader(BaseModel):
    idempotency_key: str | None = Field(
        None,
        alias="Idempotency-Key",
        max_length=MAX_KEY_LENGTH,
        description="the same key with the same request answers the first answer again (kept at least 24 h); "
        "with another request, 409 idempotency_key_reused",
    )


# --- accounts and tokens ------------------------------------------------------------------------


class Credentials(Model):
    email: str = Field(max_length=254)
    password: str = Field(max_length=1000)


class PasswordChange(Model):
    current_password: str = Field(max_length=1000)
    new_password: str = Field(max_length=1000)


class PasswordConfirmation(Model):
    password: str = Field(max_length=1000, description="the account's current password")


class Tokens(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"]
    expires_in: int = Field(description="seconds the access token lasts")


class AccessToken(BaseModel):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int


class Account(BaseModel):
    id: uuid.UUID
    email: str
    role: Role
    organisation_id: uuid.UUID
    created_at: datetime | None


class KeyIdentity(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    role: Role = Field(description="as the key may act now: never above its creator's current role")
    galleries: list[str] | None


class Whoami(Account):
    api_key: KeyIdentity | None = Field(None, description="present when the caller is an API key (of this account)")


class AccountPage(BaseModel):
    items: list[Account]
    next_cursor: str | None


class AccountPath(BaseModel):
    account_id: uuid.UUID


class RoleChange(Model):
    role: Role


class NewAccount(Model):
    email: str = Field(max_length=254)
    password: str = Field(max_length=1000, description="the initial password, to hand over")
    role: Role = Role.user


class ApiKeyCreate(Model):
    name: Text
    role: Role = Role.operator
    galleries: list[GalleryName] | None = Field(None, description="the only galleries the key may use; null: all")
    expires_at: datetime | None = None


class ApiKey(BaseModel):
    id: uuid.UUID
    name: str
    role: Role
    galleries: list[str] | None
    prefix: str = Field(description="the key's first characters, to recognise it")
    created_by: uuid.UUID
    created_at: datetime | None
    expires_at: datetime | None
    last_used_at: datetime | None


class NewApiKey(ApiKey):
    key: str = Field(description="the secret, shown once: send it as `Authorization: Bearer <key>` or `X-API-Key`")


class ApiKeyList(BaseModel):
    items: list[ApiKey]


class ApiKeyPath(BaseModel):
    key_id: uuid.UUID


class AuditQuery(PageQuery):
    actor_id: uuid.UUID | None = None
    action: str | None = Field(None, max_length=50)
    target_id: str | None = Field(None, max_length=100)
    since: datetime | None = None
    until: datetime | None = None


class AuditEvent(BaseModel):
    id: uuid.UUID
    at: datetime
    actor_id: uuid.UUID | None
    actor_email: str | None
    action: str
    target_type: str | None
    target_id: str | None
    api_key_id: uuid.UUID | None
    details: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditEvent]
    next_cursor: str | None


class WebhookSecret(BaseModel):
    secret: str


# --- galleries -----------------------------------------------------------------------------------


GalleryThreshold = Annotated[
    BoundedThreshold | None,
    Field(
        description=f"a fixed recognition threshold for this gallery, {THRESHOLD_RANGE}; "
        "null: derived from MATCH_FPIR and its size"
    ),
]


class UnknownsSetting(Model):
    """Recurring unknown faces (docs/UNKNOWNS.md): off by default; biometric data of people who
    did not consent, kept for `retention_days` at most. Turning it off deletes the pool."""

    enabled: bool = False
    retention_days: int = Field(30, ge=1, le=365, description="unmatched faces are deleted after this many days")


class GalleryCreate(Model):
    name: GalleryName
    match_threshold: GalleryThreshold = None
    unknowns: UnknownsSetting | None = None


class GalleryPatch(Model):
    """Only the fields sent change."""

    match_threshold: GalleryThreshold = None
    unknowns: UnknownsSetting | None = None


class GalleryPath(BaseModel):
    name: GalleryName


class Gallery(BaseModel):
    id: uuid.UUID
    name: str
    owner_id: uuid.UUID | None = Field(description="the account that created it")
    person_count: int
    match_threshold: float | None
    unknowns: UnknownsSetting
    created_at: datetime | None


class GalleryPage(BaseModel):
    items: list[Gallery]
    next_cursor: str | None


# --- persons and faces ----------------------------------------------------------------------------


class EnrollForm(Model):
    name: Text
    image: Image
    consent: Consent
    gallery: GalleryName = "default"
    external_id: OptionalText = None
    target_face: TargetFace = None
    force: Force = False
    webhook_url: WebhookUrl = None


class ProfileFaceForm(Model):
    image: Image
    consent: Consent
    name: OptionalText = None
    webhook_url: WebhookUrl = None


class AddFaceForm(Model):
    image: Image
    force: Force = False
    target_face: TargetFace = None
    webhook_url: WebhookUrl = None


class PersonPath(BaseModel):
    person_id: uuid.UUID


class FacePath(BaseModel):
    person_id: uuid.UUID
    face_id: uuid.UUID


class PersonsQuery(PageQuery):
    gallery: GalleryName = "default"
    external_id: str | None = Field(None, max_length=200)
    q: str | None = Field(
        None, min_length=1, max_length=200, description="only persons whose name or external_id contains it (any case)"
    )


class PersonPatch(Model):
    """Only the fields sent change; `null` is allowed only for external_id (it removes it)."""

    name: Text = Field(None, json_schema_extra=_sent_or_unchanged)
    external_id: Text | None = Field(None, description="null removes it")
    metadata: Metadata = Field(None, json_schema_extra=_sent_or_unchanged)


class PersonMerge(Model):
    into: uuid.UUID = Field(description="the person of the same gallery that receives every face")


class FaceMove(Model):
    person_id: uuid.UUID = Field(description="the person of the same gallery that receives the face")


class Face(BaseModel):
    id: uuid.UUID
    model: str
    det_score: float
    bbox: Box
    quality: dict[str, float] | None
    photo_sha256_prefix: str | None = Field(description="first 12 hex digits of the source photo's sha256")
    crop_url: str | None = Field(
        None, description="where its aligned 112x112 crop is (image/jpeg); null when it was kept without one"
    )
    created_at: datetime | None


class FaceList(BaseModel):
    items: list[Face]


class ConsentRecord(BaseModel):
    given_at: datetime | None
    given_by: uuid.UUID | None


class Person(BaseModel):
    id: uuid.UUID
    name: str
    external_id: str | None
    metadata: dict[str, Any]
    gallery: str
    account_id: uuid.UUID | None
    consent: ConsentRecord
    created_at: datetime | None
    face_count: int
    faces: list[Face] | None = None


class PersonPage(BaseModel):
    items: list[Person]
    next_cursor: str | None


class PersonAccepted(BaseModel):
    person_id: uuid.UUID
    job_id: uuid.UUID


class JobAccepted(BaseModel):
    job_id: uuid.UUID


# --- batches ----------------------------------------------------------------------------------------


class BatchForm(Model):
    images: list[File] = Field(default_factory=list, description="photos named by the manifest's `file`")
    manifest: str | None = Field(
        None, description='JSON list of {"file", "name", "external_id"?, "target_face"? ("x,y,w,h": which face)}'
    )
    archive: File | None = Field(None, description="a ZIP laid out as <person name>/<photo>")
    consent: Consent
    gallery: GalleryName = "default"
    force: Force = False
    webhook_url: WebhookUrl = None


class BatchPath(BaseModel):
    batch_id: uuid.UUID


class BatchAccepted(BaseModel):
    batch_id: uuid.UUID
    total: int


class PossibleDuplicate(BaseModel):
    """Another person of the gallery whose face this one matches at or above the gallery's threshold."""

    person_id: uuid.UUID
    name: str
    external_id: str | None
    similarity: float


class BatchItem(BaseModel):
    index: int | None
    file: str | None
    name: str | None
    external_id: str | None
    person_id: uuid.UUID | None
    job_id: uuid.UUID
    status: JobStatus
    face_id: uuid.UUID | None
    faces_detected: int | None
    duplicate: bool | None
    possible_duplicate_of: list[PossibleDuplicate] = Field(
        default_factory=list, description="other persons of the gallery this item's face matches"
    )
    error: ErrorDetail | None


class Deliveries(BaseModel):
    url: str
    deliveries: list[dict[str, Any]]


class Batch(BaseModel):
    id: uuid.UUID
    status: Literal["queued", "running", "succeeded", "partial", "failed"]
    gallery: str
    total: int
    succeeded: int
    failed: int
    created_at: datetime | None
    items: list[BatchItem] | None = None
    webhook: Deliveries | None = None


class BatchPage(BaseModel):
    items: list[Batch]
    next_cursor: str | None


# --- recognition and verification -------------------------------------------------------------------


UnknownSource = Annotated[
    Annotated[str, Field(min_length=1, max_length=100)] | None,
    BeforeValidator(_blank_is_none),
    Field(
        None,
        description="where the photo was taken (a camera or door name), kept with unmatched faces "
        "in galleries with recurring unknowns on",
    ),
]


TopK = Annotated[int, *_defaults_to("default_top_k"), Field(ge=1), _at_most("max_top_k")]
TOP_K = f"at most {_named('max_top_k')}, default {_named('default_top_k')} (settings)"
MaxFaces = Annotated[int, *_defaults_to("default_max_faces"), Field(ge=1), _at_most("max_max_faces")]
MAX_FACES = f"largest first; at most {_named('max_max_faces')}, default {_named('default_max_faces')} (settings)"


class RecognizeForm(Model):
    image: Image | None = None
    images: list[Image] = Field(
        default_factory=list,
        description=f"instead of `image`: up to {_named('recognize_max_images')} photos in one job"
        " (a setting), the result's `photos` in the order sent",
    )
    gallery: GalleryName = "default"
    threshold: Threshold = None
    top_k: TopK = Field(description=f"matches per face; {TOP_K}")
    max_faces: MaxFaces = Field(description=MAX_FACES)
    webhook_url: WebhookUrl = None
    source: UnknownSource = None


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, str) and value.strip().isdigit() else value


LandmarkCount = Annotated[
    Literal[5, 106] | None,
    BeforeValidator(_blank_is_none),
    BeforeValidator(_number),
    Field(description="106 adds each face's 106-point landmarks (`landmarks_106`); 5 (the default): keypoints only"),
]


class DetectForm(Model):
    image: Image
    max_faces: MaxFaces = Field(description=MAX_FACES)
    landmarks: LandmarkCount = None
    webhook_url: WebhookUrl = None


class DetectQuery(WaitQuery):
    landmarks: LandmarkCount = None


class SearchBody(Model):
    face_id: uuid.UUID = Field(description="a stored face (GET /api/v1/persons/{person_id}/faces lists them)")
    gallery: GalleryName | None = Field(None, description="the gallery to search; default: the face's own")
    top_k: TopK = Field(description=f"persons to answer; {TOP_K}")
    threshold: Threshold = None


class VerifyForm(Model):
    image_a: File | None = Field(None, description="with image_b: are they the same person?")
    image_b: File | None = None
    image: File | None = Field(None, description="with person_id: is this the enrolled person?")
    person_id: uuid.UUID | None = None
    threshold: Threshold = None
    webhook_url: WebhookUrl = None


class Match(BaseModel):
    person_id: uuid.UUID
    name: str
    external_id: str | None
    metadata: dict[str, Any]
    similarity: float


Point = Annotated[list[float], Field(min_length=2, max_length=2, description="x, y in the photo's pixels")]


class Keypoints(BaseModel):
    """The five keypoints; left and right as seen in the photo (the left eye is the person's right)."""

    left_eye: Point
    right_eye: Point
    nose: Point
    mouth_left: Point
    mouth_right: Point


class HeadPose(BaseModel):
    """Degrees, estimated from the five keypoints (docs/RECOGNITION.md, "Head pose")."""

    yaw: float = Field(description="positive: the nose points to the photo's right; 90 is a profile")
    pitch: float = Field(description="positive: the face is turned up (chin raised)")
    roll: float = Field(description="positive: the face is tilted clockwise in the photo")


class FaceQuality(BaseModel):
    model_config = ConfigDict(extra="allow")

    face_size: float = Field(description="the shorter side of the box, in pixels")
    det_score: float
    sharpness: float = Field(description="variance of the Laplacian of the aligned face; low is blurred")
    brightness: float = Field(description="mean grey level (0-255) of the aligned face")
    yaw: float
    pitch: float
    roll: float


QualityForRecognition = Annotated[
    Literal["high", "medium", "low"],
    Field(
        description="high: passes the enrollment quality gates; low: in a range where genuine matches were "
        "missed most often (docs/RECOGNITION.md); medium: the rest"
    ),
]


class DetectedFace(BaseModel):
    bbox: Box
    det_score: float
    keypoints: Keypoints
    pose: HeadPose
    quality: FaceQuality
    quality_for_recognition: QualityForRecognition
    landmarks_106: list[Point] | None = Field(None, description="with landmarks=106: 106 points (InsightFace 2d106det)")


class DetectResult(BaseModel):
    faces: list[DetectedFace] = Field(description="largest first")
    faces_detected: int
    detector: str


class UnknownSighting(BaseModel):
    id: int = Field(description="the stranger's id in the gallery (GET /galleries/{name}/unknowns/{id})")
    sightings: int
    first_seen: datetime


class RecognizedFace(BaseModel):
    """A detected face's fields (DetectedFace) and its matches; the fields beyond bbox, det_score and
    quality are missing from jobs that an older version of the service finished."""

    bbox: Box
    det_score: float
    keypoints: Keypoints | None = None
    pose: HeadPose | None = None
    quality: dict[str, float]
    quality_for_recognition: QualityForRecognition | None = None
    matches: list[Match]
    unknown: UnknownSighting | None = Field(
        None, description="in a gallery with recurring unknowns on, the stranger an unmatched face belongs to"
    )


class SearchResult(BaseModel):
    face_id: uuid.UUID
    person_id: uuid.UUID = Field(description="the person the face belongs to")
    gallery: str = Field(description="the gallery searched")
    matches: list[Match] = Field(
        description="best first; the face itself is left out, its person's other faces are not"
    )
    threshold: float = Field(description="the similarity a match needed")
    threshold_source: Literal["request", "gallery", "match_fpir", "match_threshold"]
    gallery_faces: int
    expected_fpir: float | None
    model: str


class RecognizeResult(BaseModel):
    faces: list[RecognizedFace]
    threshold: float = Field(description="the similarity a match needed")
    threshold_source: Literal["request", "gallery", "match_fpir", "match_threshold"] = Field(
        description="the request's threshold, the gallery's own, one derived from MATCH_FPIR and the "
        "gallery's size, or the fixed MATCH_THRESHOLD (a recognizer without calibration)"
    )
    gallery_faces: int = Field(description="faces in the gallery: each is one chance of a false match")
    expected_fpir: float | None = Field(
        description="expected chance that a stranger is named as someone at this threshold and gallery size"
    )
    model: str


class EnrollResult(BaseModel):
    person_id: uuid.UUID
    face_id: uuid.UUID
    det_score: float
    bbox: Box
    faces_detected: int | None
    quality: dict[str, float] | None
    duplicate: bool = Field(
        description="the same photo (or a nearly identical face of it) was already enrolled for this person: "
        "nothing was added"
    )
    consistency: float | None = Field(None, description="best similarity with the person's earlier faces")
    possible_duplicate_of: list[PossibleDuplicate] = Field(
        default_factory=list,
        description="other persons of the gallery this face matches at or above its threshold: one face, two names? "
        "(ENROLL_DUPLICATE_IDENTITY=refuse fails the job identity_exists instead)",
    )


class ComparedFace(BaseModel):
    bbox: Box
    det_score: float
    faces_detected: int


class VerifyResult(BaseModel):
    similarity: float
    same_person: bool
    threshold: float
    person_id: uuid.UUID | None
    model: str
    faces: dict[str, ComparedFace] = Field(description="the face compared in each photo (its largest)")
    notes: list[str]


# --- gallery portability ----------------------------------------------------------------------------


class ImportForm(Model):
    archive: File = Field(description="a gallery archive written by an export (docs/EXPORT.md)")
    on_conflict: Literal["skip", "merge", "fail"] = Field(
        "skip",
        description="an archive person whose external_id (without one: name and a photo) the gallery has: "
        "skip it, merge its faces into it, or fail the whole import",
    )


class ReembedQuery(Model):
    skip_missing: bool = Field(
        False, description="switch even when some faces have no crop (they stay, unused, with their old embedding)"
    )


class ExportPath(BaseModel):
    export_id: uuid.UUID


class ExportResult(BaseModel):
    export_id: uuid.UUID
    gallery: str
    download: str = Field(description="GET it with the same credentials until expires_at")
    expires_at: datetime
    size: int
    sha256: str = Field(description="of the whole archive file")
    persons: int
    faces: int
    faces_without_crop: int
    format_version: int


class ImportItem(BaseModel):
    name: str | None = Field(description="null once the person was deleted")
    external_id: str | None
    person_id: uuid.UUID | None = None
    status: Literal["created", "merged", "skipped"]
    faces: list[dict[str, Any]] = Field(description="each archive face: {id, status: added|reembedded|existing|failed}")
    errors: list[dict[str, Any]]


class ImportResult(BaseModel):
    gallery: str
    gallery_created: bool
    model: str = Field(description="the model of the gallery's embeddings")
    on_conflict: Literal["skip", "merge", "fail"]
    persons: dict[str, int] = Field(description="created, merged, skipped")
    faces: dict[str, int] = Field(description="added (embedding kept), reembedded (from the crop), existing, failed")
    items: list[ImportItem]


class ReembedResult(BaseModel):
    gallery: str
    previous_model: str | None
    model: str
    faces: int
    reembedded: int
    faces_without_crop: list[dict[str, Any]]


class JobProgress(BaseModel):
    done: int
    total: int
    at: float = Field(description="when it was reported (Unix time)")


class Job(BaseModel):
    id: uuid.UUID
    type: JobType
    status: JobStatus
    gallery: str | None
    person_id: uuid.UUID | None
    batch_id: uuid.UUID | None = None
    index: int | None = None
    file: str | None = None
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    result: (
        EnrollResult
        | RecognizeResult
        | VerifyResult
        | DetectResult
        | ExportResult
        | ImportResult
        | ReembedResult
        | None
    )
    error: ErrorDetail | None
    progress: JobProgress | None = Field(None, description="a gallery export, import or re-embedding while it runs")
    timings_ms: dict[str, float] | None
    webhook: Deliveries | None = None


class SubmittedJob(Job):
    """`?wait=N` answers 200 with the finished job and the 202 fields."""

    job_id: uuid.UUID
    person_id: uuid.UUID | None = None


class JobPath(BaseModel):
    job_id: uuid.UUID


class JobsQuery(PageQuery):
    status: JobStatus | None = None
    type: JobType | None = None


class JobPage(BaseModel):
    items: list[Job]
    next_cursor: str | None


class Delivery(BaseModel):
    delivery_id: str


# --- probes ---------------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str]


# --- recurring unknown faces -------------------------------------------------------------------


class UnknownsPath(BaseModel):
    name: GalleryName
    unknown_id: int = Field(ge=1)


class UnknownFacePath(UnknownsPath):
    face_id: uuid.UUID


class UnknownsQuery(Model):
    order: Literal["last_seen", "count"] = Field("last_seen", description="most recently seen, or most seen, first")
    limit: int = Field(50, ge=1, le=200)
    offset: int = Field(0, ge=0, le=1_000_000)


class UnknownGroup(BaseModel):
    id: int = Field(description="the stranger's id in this gallery, stable while the group lives")
    faces: int = Field(description="faces kept (within the retention period)")
    sightings: int
    first_seen: datetime
    last_seen: datetime
    sources: list[str]
    recurring: bool = Field(description="seen at least UNKNOWNS_RECURRING_SIGHTINGS times")
    sample_crops: list[str] = Field(description="URLs of the group's best face crops (image/jpeg)")


class UnknownGroupPage(BaseModel):
    items: list[UnknownGroup]
    total: int


class UnknownFace(BaseModel):
    id: uuid.UUID
    unknown_id: int
    seen_at: datetime
    source: str | None
    job_id: uuid.UUID | None
    det_score: float
    bbox: list[float]
    quality: dict[str, Any] | None
    crop_url: str


class UnknownGroupFaces(UnknownGroup):
    items: list[UnknownFace]


class UnknownEnroll(Model):
    name: Text
    external_id: Text | None = None
    consent: Literal[True] = Field(description="the person has consented to being enrolled")
    metadata: Metadata = Field(default_factory=dict)


class UnknownMerge(Model):
    into: int = Field(ge=1, description="the group that keeps its id and receives this one's faces")


class UnknownEnrolled(BaseModel):
    person_id: uuid.UUID
    faces_enrolled: int
    faces_left_out: int = Field(description="faces that did not agree with the group, or past the limit")
