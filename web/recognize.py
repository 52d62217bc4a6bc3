"""Recognition and verification: who is in a photo, and are two faces the same person."""

from __future__ import annotations

from flask import jsonify, request

from domain.errors import ServiceError
from domain.models import Role
from web import services
from web.auth import current_caller, roles_required
from web.db import get_session
from web.errors import too_large
from web.extensions import limiter
from web.forms import Upload, bad_request, checked_webhook, read_upload
from web.idempotency import idempotent
from web.ratelimits import submit_limit
from web.schemas import (
    DetectForm,
    DetectQuery,
    IdempotencyHeader,
    JobAccepted,
    RecognizeForm,
    SearchBody,
    SearchResult,
    SubmittedJob,
    VerifyForm,
    WaitQuery,
)
from web.settings import app_settings
from web.validation import AUTH, errors, resource, validated
from web.waiting import accepted

bp = resource(
    "recognition",
    __name__,
    "/api/v1",
    "Detection, 1:N recognition in a gallery, search by a stored face, 1:1 verification",
)
SUBMIT_ERRORS = errors(400, 404, 409, 413, 415, 503, *AUTH)


@bp.post("/recognize", responses={202: JobAccepted, 200: SubmittedJob, **SUBMIT_ERRORS})
@roles_required(Role.admin, Role.operator)
@limiter.limit(submit_limit)
@idempotent
@validated
def recognize(form: RecognizeForm, query: WaitQuery, header: IdempotencyHeader):
    """Recognize every face in a photo, or in several photos (asynchronous)

    One photo as `image`, or up to RECOGNIZE_MAX_IMAGES as `images` parts: one job whose result
    lists each photo's faces in order (`photos`); a photo that cannot be read fails alone.
    `?wait=N` (N <= 30) answers 200 with the finished job if it ends within N seconds.
    """
    webhook_url = checked_webhook(form.webhook_url)
    upload, photos = _recognize_uploads(form)
    job = services.submit_recognition(
        get_session(),
        current_caller(),
        image=upload,
        photos=photos,
        gallery_name=form.gallery,
        threshold=form.threshold,
        top_k=form.top_k,
        max_faces=form.max_faces,
        webhook_url=webhook_url,
        source=form.source,
    )
    return accepted(job, {"job_id": str(job.id)}, query.wait)


@bp.before_request
def _limit_body() -> None:
    """Several photos may be sent to /recognize: its body may hold each at MAX_UPLOAD_BYTES."""
    if request.endpoint == f"{bp.name}.recognize":
        settings = app_settings()
        request.max_content_length = min(
            settings.max_batch_bytes, settings.recognize_max_images * (settings.max_upload_bytes + 1024)
        )


def _recognize_uploads(form: RecognizeForm) -> tuple[Upload | None, list[Upload | ServiceError] | None]:
    """The one photo of `image`, or every photo of `images`, each read on its own: one refused
    (not an image, too large) is kept as its error and fails alone; none readable is a 400."""
    if not form.images:
        if form.image is None:
            raise bad_request("missing_field", "The field 'image' is required (or several photos as 'images').")
        try:
            return read_upload(form.image), None
        except ServiceError as error:  # one photo over the limit answers as its body always did
            raise too_large() if error.code == "file_too_large" else error from None
    limit = app_settings().recognize_max_images
    if form.image is not None:
        raise bad_request("invalid_field", "Send one photo as 'image' or several as 'images', not both.")
    if len(form.images) > limit:
        raise bad_request(
            "too_many_images", f"At most {limit} photos a job (RECOGNIZE_MAX_IMAGES): send the rest in another job."
        )
    photos: list[Upload | ServiceError] = []
    for storage in form.images:
        try:
            photos.append(read_upload(storage))
        except ServiceError as error:
            photos.append(ServiceError(error.code, error.message, file=storage.filename or "", **error.details))
    if not any(isinstance(photo, Upload) for photo in photos):
        raise bad_request(
            "invalid_image", "None of the photos could be read.", photos=[photo.as_dict() for photo in photos]
        )
    return None, photos


@bp.post("/detect", responses={202: JobAccepted, 200: SubmittedJob, **SUBMIT_ERRORS})
@roles_required(Role.admin, Role.operator)
@limiter.limit(submit_limit)
@idempotent
@validated
def detect(form: DetectForm, query: DetectQuery, header: IdempotencyHeader):
    """Find the faces of a photo: boxes, keypoints, head pose and quality (asynchronous)

    No gallery is needed and nothing is stored. `landmarks=106` (form field or query parameter)
    adds each face's 106 landmarks. `?wait=N` (N <= 30) answers 200 with the finished job if it
    ends within N seconds.
    """
    if form.landmarks and query.landmarks and form.landmarks != query.landmarks:
        raise bad_request("invalid_field", "landmarks differs between the query and the form: send it once.")
    webhook_url = checked_webhook(form.webhook_url)
    upload = read_upload(form.image)
    job = services.submit_detection(
        get_session(),
        current_caller(),
        image=upload,
        max_faces=form.max_faces,
        landmarks=form.landmarks or query.landmarks or 5,
        webhook_url=webhook_url,
    )
    return accepted(job, {"job_id": str(job.id)}, query.wait)


@bp.post("/search", responses={200: SearchResult, **errors(400, 404, *AUTH)})
@roles_required(Role.admin, Role.operator)
@limiter.limit(submit_limit)  # a biometric search, as a recognition is
@validated
def search(body: SearchBody):
    """The persons a stored face matches, without uploading a photo (synchronous)

    The gallery is the face's own unless `gallery` names another of the organisation's. The face
    itself is left out; its person's other faces are not. Threshold as in recognition.
    """
    return jsonify(
        services.search_by_face(
            get_session(),
            current_caller(),
            face_id=body.face_id,
            gallery_name=body.gallery,
            top_k=body.top_k,
            threshold=body.threshold,
        )
    )


@bp.post("/verify", responses={202: JobAccepted, 200: SubmittedJob, **SUBMIT_ERRORS})
@roles_required(Role.admin, Role.operator)
@limiter.limit(submit_limit)
@idempotent
@validated
def verify(form: VerifyForm, query: WaitQuery, header: IdempotencyHeader):
    """1:1 verification: `image_a` and `image_b`, or `image` and `person_id` (asynchronous)

    The threshold is the 1:1 one: a pair question has no gallery.
    """
    webhook_url = checked_webhook(form.webhook_url)
    session = get_session()
    if form.person_id is not None or form.image is not None:
        if form.person_id is None or form.image is None:
            raise bad_request("missing_field", "Send image with person_id (or image_a with image_b).")
        person = services.load_person(session, current_caller(), form.person_id)
        first, second = read_upload(form.image), None
    elif form.image_a is not None and form.image_b is not None:
        person = None
        first, second = read_upload(form.image_a), read_upload(form.image_b)
    else:
        raise bad_request("missing_field", "Send image_a and image_b, or image and person_id.")
    job = services.submit_verification(
        session,
        current_caller(),
        image=first,
        second_image=second,
        person=person,
        threshold=form.threshold,
        webhook_url=webhook_url,
    )
    return accepted(job, {"job_id": str(job.id)}, query.wait)
