"""POST /recognize's optional `source` sent blank (as Swagger UI's "Try it out" and `curl -F source=`
send it) is a field left out, like every other optional form field: the job is accepted. It
answered 500 internal_error before (the length bound was checked against the blank's None)."""

from __future__ import annotations

import uuid

import pytest

from tests import images
from tests.conftest import enroll, upload


@pytest.mark.parametrize("blank", ["", "   ", "null"])
def test_a_blank_source_is_left_out(client, operator_headers, blank):
    enroll(client, operator_headers, images.tom_hanks(), "Someone")  # a gallery to search
    response = client.post(
        "/api/v1/recognize",
        data={"image": upload(images.group_photo()), "source": blank},
        headers=operator_headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 202, response.get_data(as_text=True)


def test_a_source_over_100_characters_names_the_field(client, operator_headers):
    enroll(client, operator_headers, images.tom_hanks(), "Someone")
    response = client.post(
        "/api/v1/recognize",
        data={"image": upload(images.group_photo()), "source": "x" * 101},
        headers=operator_headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_field" and "source" in error["message"]


@pytest.mark.parametrize("blank", ["", "null"])
def test_blank_top_k_and_max_faces_take_the_apps_defaults(client, operator_headers, db, blank):
    """Swagger UI's "Try it out" sends top_k and max_faces empty (their defaults are settings, so the
    document shows none): the job takes DEFAULT_TOP_K and DEFAULT_MAX_FACES, as if left out. It
    answered 400 invalid_field ('unable to parse string as an integer') before."""
    from domain.models import Job

    enroll(client, operator_headers, images.tom_hanks(), "Someone")
    response = client.post(
        "/api/v1/recognize",
        data={"image": upload(images.group_photo()), "top_k": blank, "max_faces": blank},
        headers=operator_headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    params = db.get(Job, uuid.UUID(response.get_json()["job_id"])).params
    settings = client.application.config["SETTINGS"]
    assert (params["top_k"], params["max_faces"]) == (settings.default_top_k, settings.default_max_faces)
