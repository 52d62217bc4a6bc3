"""Run one job: load it, detect and embed faces, store or search, save the outcome."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from config import Settings
from domain import batches, enrollment, jobs, recognition, uploads
from domain.db import session_scope
from domain.errors import ServiceError
from domain.faces import detection_result
from domain.images import decode
from domain.job_params import DetectParams, EnrollParams, RecognizeParams, params_of
from domain.models import Job, JobType
from domain.notifications import announce_job_ended, redis_client
from domain.timing import StageTimer
from domain.webhooks import start_delivery
from workers import portability as gallery_jobs
from workers.context import WorkerContext
from workers.engine import ModelError, crop_scale

log = logging.getLogger(__name__)


class Superseded(Exception):
    """A later run claimed the job while this one ran (jobs.finish's claimed_at)."""


def process_job(job_id: str, context: WorkerContext) -> ServiceError | None:
    """Run the job with the task's settings and engine; returns the error it ended with when it
    ended failed (by this run, or earlier: a message sent again for an ended job), None otherwise."""
    job_uuid = uuid.UUID(job_id)
    timer = StageTimer()
    with timer("claim"), session_scope() as session:
        # One statement is its own transaction: no BEGIN and COMMIT round trips around it.
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        claim = jobs.claim_with_inputs(session, job_uuid)
    if claim is None:
        log.info("job %s is unknown or already finished; nothing to do", job_id)
        with session_scope() as session:
            return jobs.ended_failed(session, job_uuid)
    claimed, image, second_image = claim
    in_redis = uploads.in_redis(claimed)  # UPLOAD_STORE=redis at submission
    if in_redis:
        image, second_image = uploads.take(redis_client(), job_uuid)
    # This run ends the job only if no later run claimed it meanwhile (jobs.finish's claimed_at);
    # otherwise its transaction, effects included, is rolled back and the later run answers.
    claimed_at = claimed.started_at
    failure: ServiceError | None = None
    recurring: list[str] = []  # unknowns groups this job made recurring: their webhook follows the commit
    try:
        try:
            with session_scope() as session:
                # The row as claimed, without reading it again (nothing but a later claim changes it).
                job = session.merge(claimed, load=False)
                result = _run(session, job, image, second_image, timer, context)
                recurring = result.pop(recognition.RECURRING_UNKNOWNS, [])
                if not jobs.finish(session, job_uuid, result=result, timings=timer.as_ms(), claimed_at=claimed_at):
                    raise Superseded
        except ServiceError as error:
            with session_scope() as session:
                if not jobs.finish(session, job_uuid, error=error, timings=timer.as_ms(), claimed_at=claimed_at):
                    raise Superseded from None
                if claimed.type is JobType.enroll:
                    enrollment.discard_failed(session, claimed)
            log.info("job %s failed: %s", job_id, error.code)
            failure = error
        except OperationalError:
            raise  # the database is unreachable: the task retries and the job stays `running`
        except Superseded:
            raise
        except Exception:
            log.exception("job %s crashed", job_id)
            with session_scope() as session:
                crashed = ServiceError("internal_error", "The job failed unexpectedly.")
                if not jobs.finish(session, job_uuid, error=crashed, claimed_at=claimed_at):
                    raise Superseded from None
            failure = crashed
    except Superseded:
        log.warning("job %s was claimed again by a later run while this one ran; this run ends nothing", job_id)
        return None
    job_ended(job_uuid, claimed.webhook_url, claimed.batch_id, settings=context.settings, photos_in_redis=in_redis)
    for group_id in recurring if claimed.webhook_url else ():
        start_delivery(uuid.UUID(group_id), kind="unknown", settings=context.settings)
    return failure


def job_ended(
    job_id: uuid.UUID,
    webhook_url: str | None,
    batch_id: uuid.UUID | None,
    *,
    settings: Settings,
    photos_in_redis: bool = False,
) -> None:
    """After the transaction that ended a job (here, or the reaper's): erase its photos kept in
    Redis (no byte of an ended job's upload is kept), wake its long-polls, send its webhook, and
    close its batch if it was the last item."""
    if photos_in_redis:
        uploads.drop(redis_client(), job_id)
    announce_job_ended(job_id)
    if webhook_url:
        start_delivery(job_id, settings=settings)
    if batch_id:
        _notify_batch(batch_id, settings)


def _notify_batch(batch_id: uuid.UUID, settings: Settings) -> None:
    """Whoever ends a batch's last item closes it and sends the batch webhook (exactly once)."""
    with session_scope() as session:
        due = batches.end_once(session, batch_id)
    if due:
        start_delivery(batch_id, kind="batch", settings=settings)


def _largest_face(engine, image: bytes, timer: StageTimer) -> list:
    """All faces detected (largest first), with only the largest one embedded."""
    return _analyze(engine, image, timer, embed_only=1)


def _enrollment_faces(engine, image: bytes, timer: StageTimer, target_face: list[float] | None) -> list:
    """All faces detected, largest first, or the one `target_face` chooses first; only the first embedded."""
    if not target_face:
        return _largest_face(engine, image, timer)
    return _analyze(engine, image, timer, embed_only=1, order=lambda faces: enrollment.target_first(faces, target_face))


def _decode_and_detect(engine, image: bytes, timer: StageTimer, max_faces: int):
    """The photo decoded at the coarsest scale its detector needs, and its faces (largest first)."""
    with timer("decode"):
        decoded = decode(image, min_long_side=engine.decode_long_side())
    with timer("detect"):
        faces = engine.detect(decoded.bgr, max_faces, scale=decoded.scale)
    return decoded, faces


def _fine_enough(engine, image: bytes, timer: StageTimer, decoded, faces: list):
    """The photo decoded again, finer, when one of `faces` is too small at its scale for an aligned crop."""
    if (finer := crop_scale(faces, decoded.scale)) == decoded.scale:
        return decoded
    with timer("decode"):
        return decode(image, min_long_side=engine.decode_long_side(), max_scale=finer)


def _analyze(
    engine,
    image: bytes,
    timer: StageTimer,
    max_faces: int = 0,
    embed_only: int = 0,
    order: Callable[[list], list] | None = None,
) -> list:
    """Decode, detect (the `max_faces` largest; all when 0) and embed (the first `embed_only`; all
    when 0), each stage timed. Faces come back in the full photo's pixels.

    A large JPEG is decoded at 1/2, 1/4 or 1/8 of its size (never below twice the detector's
    input): the detector would shrink it to DET_SIZE anyway. Only when a face to embed is too
    small in that image for its aligned crop is the photo decoded again, finer (crop_scale).
    `order` may reorder the faces detected before the first `embed_only` are embedded.
    """
    decoded, faces = _decode_and_detect(engine, image, timer, max_faces)
    if order is not None:
        faces = order(faces)
    chosen = faces[:embed_only] if embed_only else faces
    decoded = _fine_enough(engine, image, timer, decoded, chosen)
    with timer("embed"):
        engine.embed(decoded.bgr, chosen, scale=decoded.scale)
    return faces


def _detect(engine, image: bytes, timer: StageTimer, max_faces: int, landmarks: int) -> list:
    """Decode, detect and measure each face on its aligned crop (no embedding: nothing is
    compared), and add the 106 landmarks when asked."""
    decoded, faces = _decode_and_detect(engine, image, timer, max_faces)
    decoded = _fine_enough(engine, image, timer, decoded, faces)
    with timer("measure"):
        engine.assess(decoded.bgr, faces, scale=decoded.scale)
    if landmarks == 106 and faces:
        with timer("landmarks"):
            try:
                engine.add_landmarks(decoded.bgr, faces, scale=decoded.scale)
            except ModelError as error:
                raise ServiceError("landmarks_unavailable", str(error)) from None
    return faces


def _run(
    session: Session,
    job: Job,
    image: bytes | None,
    second_image: bytes | None,
    timer: StageTimer,
    context: WorkerContext,
) -> dict:
    if job.type in gallery_jobs.GALLERY_JOBS:
        return gallery_jobs.run(session, job, image, context)  # `image`: an import's archive
    if image is None:
        raise ServiceError("input_missing", "The job's photo is no longer available.")
    sizes = params_of(job, RecognizeParams).photo_sizes if job.type is JobType.recognize else None
    if sizes is not None:
        return _recognize_photos(session, job, jobs.split_photos(image, sizes), timer, context)
    engine = gallery_jobs.engine_for(session, job, context)  # with the recognizer of the gallery's model
    if job.type is JobType.enroll:
        sha256 = enrollment.job_photo_hash(job, image)
        if (existing := enrollment.already_enrolled(session, job, sha256)) is not None:
            return existing  # the same photo again: nothing to detect, nothing to add
        faces = _enrollment_faces(engine, image, timer, params_of(job, EnrollParams).target_face)
        with timer("store"):
            return enrollment.enroll(session, job, faces, engine.model_name, sha256, settings=context.settings)
    if job.type is JobType.detect:
        asked = params_of(job, DetectParams)
        faces = _detect(engine, image, timer, asked.max_faces, asked.landmarks)
        gates = asked.quality_gates or context.settings.enrollment_policy()
        return detection_result(faces, gates, engine.pack.detector.stem)
    if job.type is JobType.verify:
        faces = _largest_face(engine, image, timer)
        other = _largest_face(engine, second_image, timer) if second_image is not None else None
        with timer("compare"):
            return recognition.verify(session, job, faces, other, engine.model_name)
    faces = _analyze(engine, image, timer, max_faces=params_of(job, RecognizeParams).max_faces)
    with timer("search"):
        return recognition.recognize(session, job, faces, engine.model_name, context.settings)


def _recognize_photos(
    session: Session, job: Job, images: list[bytes], timer: StageTimer, context: WorkerContext
) -> dict:
    """A recognition of several photos: each photo decoded and detected in turn (only its faces'
    aligned crops are kept), then every face of the job embedded (in the engine's batches,
    workers/engine.embed_batch), then searched. A photo refused at submission, unreadable now, or
    without a face fails only itself."""
    engine = gallery_jobs.engine_for(session, job, context)
    asked = params_of(job, RecognizeParams)
    refused = asked.photo_errors or {}
    photos: list[list | ServiceError] = []
    faces, crops = [], []
    for index, data in enumerate(images):
        if str(index) in refused:
            photos.append(ServiceError(**refused[str(index)]))
            continue
        try:
            found, aligned = _detect_and_align(engine, data, timer, asked.max_faces)
        except ServiceError as error:
            photos.append(error)
            continue
        except (OSError, ValueError):  # passed validation's header checks, but its data is broken
            photos.append(ServiceError("invalid_image", "The photo could not be decoded."))
            continue
        photos.append(found)
        faces += found
        crops += aligned
    with timer("embed"):
        engine.embed_aligned(faces, crops)  # in the recognizer calls the engine's provider is best at
    with timer("search"):
        return recognition.recognize_photos(session, job, photos, engine.model_name, context.settings)


def _detect_and_align(engine, image: bytes, timer: StageTimer, max_faces: int) -> tuple[list, list]:
    """One photo's faces (as `_analyze` finds them) and their aligned crops, not yet embedded."""
    decoded, faces = _decode_and_detect(engine, image, timer, max_faces)
    decoded = _fine_enough(engine, image, timer, decoded, faces)
    with timer("align"):
        return faces, engine.align(decoded.bgr, faces, scale=decoded.scale)
