"""A job's params read through one typed accessor (domain/job_params.py): each job type has its
model, a row without a key reads as its readers always assumed, and unknown keys survive."""

from __future__ import annotations

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
