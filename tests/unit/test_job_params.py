"""A job's params read through one typed accessor (domain/job_params.py): each job type has its
model, a row without a key reads as its readers always assumed, and unknown keys survive."""

from __future__ import annotations

import uuid

import pytest

from domain.job_params import (
    DetectParams,
    EnrollParams,
    ImportParams,
    RecognizeParams,
    ReembedParams,
    params_of,
)
from domain.models import Job, JobType


def _job(job_type: JobType, params: dict | None) -> Job:
    return Job(type=job_type, params=params)


def test_every_job_type_has_its_model():
    for job_type in JobType:
        params_of(_job(job_type, {"threshold": 0.3}), _model_of(job_type))


def _model_of(job_type: JobType) -> type:
    from domain import job_params

    return job_params._MODELS[job_type]


def test_an_enrollment_reads_typed_with_its_defaults():
    params = params_of(_job(JobType.enroll, {"created_person": True, "force": True, "index": 3}), EnrollParams)
    assert (params.created_person, params.created_gallery, params.force, params.index) == (True, False, True, 3)
    assert params.store_crop is True and params.target_face is None and params.quality_gates is None
    assert params_of(_job(JobType.enroll, None), EnrollParams).created_person is None  # a row from before the key


def test_defaults_match_what_readers_assumed():
    assert params_of(_job(JobType.import_, {"gallery": "g"}), ImportParams).on_conflict == "skip"
    assert params_of(_job(JobType.reembed, {}), ReembedParams).skip_missing is False
    recognize = params_of(_job(JobType.recognize, {"top_k": 7}), RecognizeParams)
    assert (recognize.top_k, recognize.threshold, recognize.threshold_source, recognize.source) == (
        7,
        None,
        "request",
        None,
    )
    assert params_of(_job(JobType.detect, {}), DetectParams).landmarks == 5  # keypoints only


def test_unknown_keys_are_kept():
    params = params_of(_job(JobType.enroll, {"added_later": 1}), EnrollParams)
    assert params.model_extra == {"added_later": 1}


def test_reading_a_job_as_another_types_params_is_refused():
    with pytest.raises(TypeError, match="recognize job's params are RecognizeParams, not EnrollParams"):
        params_of(_job(JobType.recognize, {}), EnrollParams)


def test_a_job_is_written_with_its_types_model_and_only_what_was_set():
    """create_job takes the job type's model (a dict or another type's model is refused before
    anything is added), and the row keeps the fields the writer set: readers' defaults stay theirs."""
    from domain.jobs import create_job

    ids = {"owner_id": uuid.uuid4(), "organisation_id": uuid.uuid4(), "image": b"x"}
    with pytest.raises(TypeError, match="RecognizeParams, not dict"):
        create_job(None, job_type=JobType.recognize, params={"top_k": 3}, **ids)
    with pytest.raises(TypeError, match="EnrollParams, not RecognizeParams"):
        create_job(None, job_type=JobType.enroll, params=RecognizeParams(top_k=3), **ids)
    params = RecognizeParams(top_k=3, threshold=None).model_copy(update={"upload": "redis"})
    assert params.stored() == {"top_k": 3, "threshold": None, "upload": "redis"}
