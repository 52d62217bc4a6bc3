"""An imported person's metadata obeys PERSON_METADATA_MAX_BYTES like one sent to the API: an archive
with a person over it is refused whole at upload, with the reason and the person, leaving nothing."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from domain import gallery_archive
from domain.errors import ServiceError
from domain.models import Gallery, Job
from tests.api.test_gallery_import_refusals import post_import
from tests.conftest import override_settings
from tests.unit.test_gallery_archive import members_of, resealed, small_archive


def with_metadata(metadata: dict) -> bytes:
    return resealed(members_of(small_archive()), lambda manifest: manifest["persons"][0].update(metadata=metadata))


def test_the_archive_reader_refuses_metadata_over_the_limit_and_names_the_person():
    at_limit = {"notes": "x" * (100 - len('{"notes": ""}'))}
    assert len(json.dumps(at_limit)) == 100
    read = gallery_archive.read(with_metadata(at_limit), max_bytes=10**7, metadata_max_bytes=100)
    assert read.manifest.persons[0].metadata == at_limit
    with pytest.raises(ServiceError) as refused:
        gallery_archive.read(with_metadata({**at_limit, "x": 1}), max_bytes=10**7, metadata_max_bytes=100)
    details = refused.value.details
    assert (refused.value.code, details["reason"], details["field"]) == (
        "invalid_archive",
        "metadata_too_large",
        "persons.0.metadata",
    )
    assert "PERSON_METADATA_MAX_BYTES" in refused.value.message


def test_an_import_with_metadata_over_the_setting_is_refused_whole(client, operator_headers, db):
    jobs_before = db.execute(select(func.count()).select_from(Job)).scalar_one()
    archive = with_metadata({"notes": "x" * 600})
    with override_settings(PERSON_METADATA_MAX_BYTES="512"):
        response = post_import(client, operator_headers, archive)
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert (error["code"], error["reason"], error["field"]) == (
        "invalid_archive",
        "metadata_too_large",
        "persons.0.metadata",
    )
    assert "512" in error["message"]
    assert db.execute(select(func.count()).select_from(Job)).scalar_one() == jobs_before
    assert db.execute(select(func.count()).where(Gallery.name == "incoming")).scalar_one() == 0
