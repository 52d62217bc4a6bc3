"""Answers that say how to fix the request, and results that say what they concern."""

from __future__ import annotations

import pytest

from tests import images
from tests.conftest import enroll, upload, wait_for_job

MULTIPART = "multipart/form-data"


def test_an_unknown_field_suggests_the_expected_one(client, operator_headers):
    response = client.post(
        "/api/v1/recognize", data={"file": upload(images.tom_hanks())}, headers=operator_headers, content_type=MULTIPART
    )
    assert response.status_code == 400
    assert "did you mean 'image'?" in response.get_json()["error"]["message"]


def test_a_private_webhook_address_names_the_setting_that_allows_it(client, operator_headers):
    response = client.post(
        "/api/v1/recognize",
        data={"image": upload(images.tom_hanks()), "webhook_url": "http://10.1.2.3/hook"},
        headers=operator_headers,
        content_type=MULTIPART,
    )
    assert response.get_json()["error"]["code"] == "invalid_webhook_url"
    assert "WEBHOOK_ALLOWED_HOSTS" in response.get_json()["error"]["message"]


@pytest.mark.usefixtures("worker")
def test_verify_says_which_faces_were_compared_and_which_photo_had_none(client, operator_headers):
    def verify(**photos: bytes) -> dict:
        form = {name: upload(data) for name, data in photos.items()}
        response = client.post("/api/v1/verify", data=form, headers=operator_headers, content_type=MULTIPART)
        assert response.status_code == 202
        assert response.headers["Location"].endswith(response.get_json()["job_id"])
        return wait_for_job(client, operator_headers, response.get_json()["job_id"])

    group = verify(image_a=images.tom_hanks(), image_b=images.group_photo())
    faces = group["result"]["faces"]
    assert faces["image_a"]["faces_detected"] == 1 and faces["image_b"]["faces_detected"] == 6
    assert len(faces["image_b"]["bbox"]) == 4
    assert group["result"]["notes"] == ["image_b shows 6 faces; its largest was compared."]

    empty = verify(image_a=images.tom_hanks(), image_b=images.no_face_photo())
    assert empty["error"]["code"] == "no_face" and empty["error"]["image"] == "image_b"
    assert "image_b" in empty["error"]["message"]


@pytest.mark.usefixtures("worker")
def test_a_failed_enrollment_job_says_whose_photo_failed(client, operator_headers):
    enrolled = enroll(client, operator_headers, images.tom_hanks(), "Tom Hanks", gallery="crew")
    wait_for_job(client, operator_headers, enrolled["job_id"])
    response = client.post(
        f"/api/v1/persons/{enrolled['person_id']}/faces",
        data={"image": upload(images.no_face_photo())},
        headers=operator_headers,
        content_type=MULTIPART,
    )
    assert response.headers["Location"] == f"/api/v1/jobs/{response.get_json()['job_id']}"
    job = wait_for_job(client, operator_headers, response.get_json()["job_id"])
    assert job["status"] == "failed"
    assert (job["gallery"], job["person_id"]) == ("crew", enrolled["person_id"])
