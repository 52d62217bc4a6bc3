"""What a job was asked to do, typed: one model per job type over the row's `params` (JSONB), read
through one accessor, `params_of(job)`.

`params` holds the request's parameters and what the submission decided for the job (the gallery
threshold and enrollment policy in force, what it created, a batch item's labels). The reaper's
state is not in it (the job's own columns, migration 0018), nor the job's result.

Every field has the default its readers assumed of a row without it, and unknown keys are kept
(`extra="allow"`), so rows written by an older or newer release read the same."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from domain.models import Job, JobType


class _Params(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    gallery: str | None = None  # the gallery's name when the job was sent (for the job document)
    upload: str | None = None  # "redis": the photos wait in Redis, not in the row (domain/uploads.py)

    def stored(self) -> dict[str, Any]:
        """The row's `params`: the fields the writer set, so a reader's defaults stay the defaults."""
        return self.model_dump(mode="json", exclude_unset=True)


class EnrollParams(_Params):
    """An enrollment (a new person, another face of one, a profile face, a batch item)."""

    # The submission created the person (removed if this job fails); False: the job adds a face to
    # a person that exists; None in a row from before the key was written.
    created_person: bool | None = None
    created_gallery: bool = False  # ... and the gallery, removed if it is left empty
    force: bool = False
    photo_sha256: str | None = None  # the photo's hash (with the chosen face's box, if any)
    target_face: list[float] | None = None  # x, y, w, h of the face to enroll; else the largest
    quality_gates: dict[str, Any] | None = None  # the enrollment policy in force at submission
    store_crop: bool = True
    duplicate_identity: str | None = None  # ENROLL_DUPLICATE_IDENTITY at submission
    same_face_similarity: float | None = None  # ENROLL_SAME_FACE_SIMILARITY at submission
    # A batch item's labels.
    index: int | None = None
    file: str | None = None
    name: str | None = None
    external_id: str | None = None


class RecognizeParams(_Params):
    threshold: float | None = None  # None: derived from the gallery's size (domain.recognition)
    threshold_source: str = "request"
    top_k: int = 5
    max_faces: int = 20
    unknowns: bool = False  # unmatched faces go to the gallery's unknowns pool
    source: str | None = None  # the camera or place the photo came from (unknowns)
    store_crop: bool = True  # an unknown face's crop is kept (no submission sets it off today)
    # A recognition of several photos: how many, their sizes in the upload, those refused at submission.
    photos: int | None = None
    photo_sizes: list[int] | None = None
    photo_errors: dict[str, Any] | None = None


class VerifyParams(_Params):
    threshold: float


class DetectParams(_Params):
    max_faces: int = 20
    landmarks: int | None = 5  # 106 adds each face's 106-point landmarks
    quality_gates: dict[str, Any] | None = None


class ExportParams(_Params):
    pass


class ImportParams(_Params):
    on_conflict: str = "skip"
    archive_sha256: str | None = None
    source_gallery: str | None = None
    archive_persons: int | None = None
    archive_faces: int | None = None


class ReembedParams(_Params):
    skip_missing: bool = False


JobParams = EnrollParams | RecognizeParams | VerifyParams | DetectParams | ExportParams | ImportParams | ReembedParams

_MODELS: dict[JobType, type[_Params]] = {
    JobType.enroll: EnrollParams,
    JobType.recognize: RecognizeParams,
    JobType.verify: VerifyParams,
    JobType.detect: DetectParams,
    JobType.export: ExportParams,
    JobType.import_: ImportParams,
    JobType.reembed: ReembedParams,
}


P = TypeVar("P", bound=_Params)


def params_model(job_type: JobType) -> type[_Params]:
    """The params model of a job type (create_job checks that a writer used it)."""
    return _MODELS[job_type]


def params_of(job: Job, model: type[P]) -> P:
    """The job's params read as `model`, which must be its type's model (EnrollParams for an
    enrollment, ...): `params_of(job, EnrollParams).force`."""
    if _MODELS[job.type] is not model:
        raise TypeError(f"a {job.type.value} job's params are {_MODELS[job.type].__name__}, not {model.__name__}")
    return model.model_validate(job.params or {})
