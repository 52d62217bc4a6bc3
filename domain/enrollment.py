"""The enrollment rules, one home for every path (a new person, an added photo, a batch item, the
caller's face profile), so that a face is never stored under the wrong person, nothing is enrolled
twice and a failed enrollment leaves nothing it created behind.

In the order a worker applies them to an enrollment photo:

1. the same photo already enrolled for this person: succeed again with the existing face (no
   detection needed); enrolled for another person of the gallery: `photo_enrolled_elsewhere`;
2. exactly one unambiguous face: none is `no_face`, a second face nearly as large as the largest
   is `multiple_faces` (which of them would be the person?);
3. the quality gates (size, detector confidence, sharpness, pose);
4. consistency: a photo added to a person who has faces must resemble them (`face_mismatch`
   below ENROLL_CONSISTENCY_THRESHOLD, unless the submission said `force=true`).

The policy in force at submission travels with the job (`Settings.enrollment_policy`).
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, NamedTuple, Protocol

import numpy as np
import simplejpeg
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from config import Settings
from domain import matching
from domain.errors import FaceError
from domain.job_params import EnrollParams, RecognizeParams, params_of
from domain.models import UNFINISHED, Batch, Face, Gallery, Job, JobStatus, JobType, Person


class EmbeddedFace(Protocol):
    bbox: list[float]
    det_score: float
    embedding: np.ndarray | None
    quality: dict[str, float]
    crop: np.ndarray | None


# A 112x112 face at this quality is 3-5 kB and shows no block artefacts at the size people look at it.
CROP_JPEG_QUALITY = 90


def photo_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def source_sha256(photo_hash: str, target_face: list[float] | None) -> str:
    """What a face's `source_sha256` records: its photo's hash, or for a face chosen by target_face
    the hash of both (one group photo may enroll each of its faces, each for its own person)."""
    if not target_face:
        return photo_hash
    return photo_sha256(f"{photo_hash}#{','.join(f'{v:g}' for v in target_face)}".encode())


def rounded_box(bbox: list[float]) -> list[float]:
    return [round(float(v), 1) for v in bbox]


def crop_jpeg(face: EmbeddedFace, job: Job) -> bytes | None:
    """The face's aligned crop as JPEG, unless the submission's settings keep no crops."""
    # An enrollment's face, or an unknown face of a recognition (its pool keeps crops).
    params = params_of(job, EnrollParams if job.type is JobType.enroll else RecognizeParams)
    if face.crop is None or not params.store_crop:
        return None
    return simplejpeg.encode_jpeg(np.ascontiguousarray(face.crop), quality=CROP_JPEG_QUALITY, colorspace="BGR")


def face_side(bbox: list[float]) -> float:
    """The shorter side of a face box, the size the quality gate and the second-face rule use."""
    return max(0.0, min(bbox[2] - bbox[0], bbox[3] - bbox[1]))


def no_face_error() -> FaceError:
    return FaceError("no_face", "No face was found in the photo.", faces_detected=0)


# --- the checks ---------------------------------------------------------------------------


def as_target_face(box: list[float]) -> str:
    """A detected box (x1, y1, x2, y2) as the `target_face` that chooses it: `x,y,w,h` in whole pixels."""
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    return f"{x1},{y1},{x2 - x1},{y2 - y1}"


def overlap(box: list[float], target: list[float]) -> float:
    """Intersection over union of a detected box (x1, y1, x2, y2) and a target face (x, y, w, h)."""
    tx1, ty1, tx2, ty2 = target[0], target[1], target[0] + target[2], target[1] + target[3]
    width = max(0.0, min(box[2], tx2) - max(box[0], tx1))
    height = max(0.0, min(box[3], ty2) - max(box[1], ty1))
    common = width * height
    union = (box[2] - box[0]) * (box[3] - box[1]) + target[2] * target[3] - common
    return common / union if union > 0 else 0.0


# A target face chooses the detected face it overlaps this much (intersection over union), as Azure's
# targetFace: a box drawn by hand around a face, or one copied from an earlier answer, reaches it.
TARGET_FACE_MIN_OVERLAP = 0.5


def target_first(faces: list, target: list[float]) -> list:
    """The faces with the one `target` (x, y, w, h) designates first: the detected face it overlaps
    most, at least TARGET_FACE_MIN_OVERLAP; none does: `target_face_not_found`, naming the boxes found."""
    if not faces:
        raise no_face_error()
    best = max(range(len(faces)), key=lambda i: overlap(faces[i].bbox, target))
    if overlap(faces[best].bbox, target) < TARGET_FACE_MIN_OVERLAP:
        found = [as_target_face(face.bbox) for face in faces[:20]]
        raise FaceError(
            "target_face_not_found",
            f"No face found overlaps target_face {','.join(f'{v:g}' for v in target)} by at least "
            f"{TARGET_FACE_MIN_OVERLAP:.0%} (x,y,w,h); the faces found are: {'; '.join(found)}.",
            faces_detected=len(faces),
            boxes=[rounded_box(face.bbox) for face in faces[:20]],
            target_faces=found,
        )
    return [faces[best], *faces[:best], *faces[best + 1 :]]


def check_single_face(faces: list[EmbeddedFace], max_second_ratio: float | None) -> None:
    """Refuse a photo whose second face is nearly as large as the largest (faces arrive largest first)."""
    if not faces:
        raise no_face_error()
    if max_second_ratio is None or len(faces) < 2:
        return
    ratio = face_side(faces[1].bbox) / max(face_side(faces[0].bbox), 1e-6)
    if ratio >= max_second_ratio:
        raise FaceError(
            "multiple_faces",
            f"The photo shows {len(faces)} faces and the second is {ratio:.0%} the size of the largest: "
            "it is not clear which one is the person. Send a photo of this person alone, or choose the "
            "face with target_face (x,y,w,h; target_faces lists them).",
            faces_detected=len(faces),
            boxes=[rounded_box(face.bbox) for face in faces[:5]],
            target_faces=[as_target_face(face.bbox) for face in faces[:20]],
        )


def check_quality(quality: dict[str, float], gates: dict[str, float], faces_detected: int = 1) -> None:
    """The quality gates, checked in this order; each failure names the measure and its limit."""
    checks = (
        ("face_size", "min_face_size", "face_too_small", "The face is {v:.0f} px; at least {g:.0f} px are needed."),
        (
            "det_score",
            "min_det_score",
            "low_confidence",
            "The detector is not confident this is a face ({v:.2f} < {g:.2f}).",
        ),
        ("sharpness", "min_sharpness", "too_blurry", "The face is too blurred (sharpness {v:.0f} < {g:.0f})."),
    )
    for measure, gate, code, message in checks:
        if quality[measure] < gates[gate]:
            raise FaceError(code, message.format(v=quality[measure], g=gates[gate]), faces_detected=faces_detected)
    if abs(quality["yaw"]) > gates["max_yaw"]:
        raise FaceError(
            "extreme_pose",
            f"The face is turned too far ({quality['yaw']:.0f} degrees; at most {gates['max_yaw']:.0f}).",
            faces_detected=faces_detected,
        )


def best_similarity(session: Session, person_id: uuid.UUID, model: str, embedding: np.ndarray) -> float | None:
    """The person's closest enrolled face of this model (None when it has none)."""
    best = session.execute(
        select(func.max(1 - Face.embedding.cosine_distance(embedding))).where(
            Face.person_id == person_id, Face.model == model
        )
    ).scalar_one_or_none()
    return None if best is None else float(best)


def check_consistency(similarity: float | None, threshold: float | None, *, force: bool, faces_detected: int) -> None:
    if similarity is None or threshold is None or force or similarity >= threshold:
        return
    raise FaceError(
        "face_mismatch",
        f"This face does not resemble the person's enrolled faces (best similarity {similarity:.2f} < "
        f"{threshold:.2f}): it may be someone else. Check the photo; send force=true to enroll it anyway.",
        best_similarity=round(similarity, 4),
        threshold=threshold,
        faces_detected=faces_detected,
    )


# --- storing ---------------------------------------------------------------------------------


def job_photo_hash(job: Job, image: bytes) -> str:
    return params_of(job, EnrollParams).photo_sha256 or photo_sha256(image)


def already_enrolled(session: Session, job: Job, sha256: str) -> dict[str, Any] | None:
    """The result for a photo this person already has (the same photo again adds nothing); a photo
    enrolled for another person of the gallery is refused: its face cannot be both of theirs."""
    if job.person_id is None:
        return None  # the person was deleted: enroll() says so
    faces = (
        session.execute(select(Face).where(Face.gallery_id == job.gallery_id, Face.source_sha256 == sha256))
        .scalars()
        .all()
    )
    for face in faces:
        if face.person_id == job.person_id:
            return face_result(face, faces_detected=None, duplicate=True)
    if faces:
        raise FaceError(
            "photo_enrolled_elsewhere",
            "This photo is already enrolled for another person of the gallery: its face cannot be both of theirs.",
            person_id=str(faces[0].person_id),
        )
    return None


def face_result(face: Face, *, faces_detected: int | None, duplicate: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "person_id": str(face.person_id),
        "face_id": str(face.id),
        "det_score": round(float(face.det_score), 4),
        "bbox": face.bbox,
        "faces_detected": faces_detected,
        "quality": face.quality,
        "duplicate": duplicate,
        **extra,
    }


def enroll(
    session: Session, job: Job, faces: list[EmbeddedFace], model: str, sha256: str, settings: Settings | None = None
) -> dict[str, Any]:
    """Check the photo against the rules above, then store its face for the job's person.

    Idempotent twice over: the face row is keyed by the job id (a redelivered job stores nothing
    new) and by (person, photo hash) (the same photo sent again stores nothing new). With
    `settings`, the face is also looked for in its gallery first (domain/identity.py): the same
    face again adds nothing, and one that another person has is reported or refused."""
    params = params_of(job, EnrollParams)
    policy = params.quality_gates or {}
    # A chosen face (target_face, put first by target_first) is the person whatever the others.
    check_single_face(faces, None if params.target_face else policy.get("max_second_face_ratio"))
    person = session.get(Person, job.person_id) if job.person_id else None
    if person is None:
        raise FaceError("person_deleted", "The person was deleted before the photo was processed.")
    face = faces[0]
    if policy:
        check_quality(face.quality, policy, len(faces))
    similarity = best_similarity(session, person.id, model, face.embedding)
    check_consistency(similarity, policy.get("min_consistency"), force=params.force, faces_detected=len(faces))
    consistency = None if similarity is None else round(similarity, 4)
    found = identity_review(session, job, face.embedding, model, settings)
    if found.same_face is not None:
        again = found.same_face
        return face_result(
            again, faces_detected=len(faces), duplicate=again.source_job_id != job.id, consistency=consistency
        )
    session.execute(
        insert(Face)
        .values(
            id=uuid.uuid4(),
            person_id=person.id,
            gallery_id=person.gallery_id,
            source_job_id=job.id,
            source_sha256=sha256,
            embedding=face.embedding,
            model=model,
            det_score=float(face.det_score),
            bbox=rounded_box(face.bbox),
            quality=face.quality,
            crop=crop_jpeg(face, job),
        )
        .on_conflict_do_nothing()
    )
    # The identity review above counted the gallery without this face: this process's next search
    # of it counts again rather than trust that count for GALLERY_SIZE_CACHE_SECONDS.
    matching.forget_gallery_size(person.gallery_id, model)
    stored = session.execute(select(Face).where(Face.person_id == person.id, Face.source_sha256 == sha256)).scalar_one()
    return face_result(
        stored,
        faces_detected=len(faces),
        duplicate=stored.source_job_id != job.id,
        consistency=consistency,
        possible_duplicate_of=found.possible_duplicate_of,
    )


def identity_review(session: Session, job: Job, embedding: np.ndarray, model: str, settings: Settings | None):
    """domain.identity.review, or nothing found without settings (a caller that only stores)."""
    # Imported here: domain.identity reads thresholds through domain.recognition, which imports this module.
    from domain import identity

    if settings is None:
        return identity.Review()
    return identity.review(session, job, embedding, model, settings)


# --- what a failed enrollment leaves behind -----------------------------------------------------


class _Created(NamedTuple):
    """What an enrollment job says it created, read off its row."""

    job_id: uuid.UUID
    person_id: uuid.UUID | None
    gallery_id: uuid.UUID | None
    in_batch: bool
    created_person: bool
    created_gallery: bool

    @classmethod
    def of(cls, job: Job) -> _Created:
        params = params_of(job, EnrollParams) if job.type is JobType.enroll else EnrollParams()
        return cls(
            job.id,
            job.person_id,
            job.gallery_id,
            job.batch_id is not None,
            bool(params.created_person),
            params.created_gallery,
        )


def discard_failed(session: Session, job: Job) -> None:
    """The one rule for every path, applied in the transaction that ends a failed (or cancelled)
    enrollment job: a person this enrollment created is removed when it has no face and no other
    enrollment of it is still queued or running; then a gallery the job created, if now empty (a
    batch's gallery once the batch ends, discard_batch_gallery).

    The person row is locked first, so two failing items of one new person (a batch) cannot both
    see the other still running and both leave the person behind."""
    _discard(session, _Created.of(job))


def undo_unsent(session: Session, jobs: list[Job], batch_id: uuid.UUID | None = None) -> None:
    """Undo submitted jobs that were committed but could not be sent (the queue went down in
    between): the jobs (and their batch) are deleted, then what they created is discarded by
    discard_failed's rule, galleries included (nothing of the submission remains to use them)."""
    created = [_Created.of(job) for job in jobs]
    session.execute(delete(Job).where(Job.id.in_([item.job_id for item in created])))
    if batch_id is not None:
        session.execute(delete(Batch).where(Batch.id == batch_id))
    for item in created:
        _discard(session, item._replace(in_batch=False))


def _discard(session: Session, created: _Created) -> None:
    if created.created_person and created.person_id is not None:
        locked = session.execute(
            select(Person.id).where(Person.id == created.person_id).with_for_update()
        ).scalar_one_or_none()
        if locked is not None and not _has_faces_or_pending(session, created.person_id, created.job_id):
            session.execute(delete(Person).where(Person.id == created.person_id))
    if created.created_gallery and created.gallery_id is not None and not created.in_batch:
        discard_gallery_if_empty(session, created.gallery_id)


def _has_faces_or_pending(session: Session, person_id: uuid.UUID, job_id: uuid.UUID) -> bool:
    faces = select(func.count()).where(Face.person_id == person_id)
    pending = select(func.count()).where(
        Job.person_id == person_id,
        Job.id != job_id,
        Job.status.in_(UNFINISHED),
    )
    return bool(session.execute(faces).scalar_one() or session.execute(pending).scalar_one())


def discard_gallery_if_empty(session: Session, gallery_id: uuid.UUID) -> bool:
    """Remove a gallery an enrollment created once it holds no person. Locking its row first waits
    for any transaction adding a person to it, whose person the count then sees."""
    locked = session.execute(select(Gallery.id).where(Gallery.id == gallery_id).with_for_update()).scalar_one_or_none()
    if locked is None or session.execute(select(func.count()).where(Person.gallery_id == gallery_id)).scalar_one():
        return False
    session.execute(delete(Gallery).where(Gallery.id == gallery_id))
    return True


def discard_batch_gallery(session: Session, batch_id: uuid.UUID) -> None:
    """A batch whose every item failed leaves no gallery it created (called once, when it ends)."""
    batch = session.get(Batch, batch_id)
    if batch is None or not batch.created_gallery or batch.gallery_id is None:
        return
    succeeded = session.execute(
        select(func.count()).where(Job.batch_id == batch_id, Job.status == JobStatus.succeeded)
    ).scalar_one()
    if not succeeded:
        discard_gallery_if_empty(session, batch.gallery_id)
