"""1:1 verification and the enrollment quality gates, through the real worker."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageFilter

from tests import images
from tests.conftest import enroll, upload, wait_for_job

pytestmark = pytest.mark.usefixtures("worker")


def _submit_verify(client, headers, **fields) -> dict:
    form = {k: upload(v) if isinstance(v, bytes) else v for k, v in fields.items()}
    response = client.post("/api/v1/verify", data=form, headers=headers, content_type="multipart/form-data")
    assert response.status_code == 202, response.get_json()
    return wait_for_job(client, headers, response.get_json()["job_id"])


def _face_of_group(index_box: tuple[int, int, int, int]) -> bytes:
    return images.crop(images.group_photo(), index_box)


def test_verify_two_photos(client, operator_headers):
    tom = images.tom_hanks()
    same = _submit_verify(client, operator_headers, image_a=tom, image_b=images.another_photo(tom, scale=2.0))
    assert same["status"] == "succeeded", same
    assert same["result"]["same_person"] is True
    assert same["result"]["similarity"] >= same["result"]["threshold"]

    stranger = images.crop(images.group_photo(), images.ONE_FACE_OF_GROUP)
    different = _submit_verify(client, operator_headers, image_a=tom, image_b=stranger)
    assert different["result"]["same_person"] is False
    assert different["result"]["similarity"] < same["result"]["similarity"]


def test_verify_against_an_enrolled_person(client, operator_headers):
    enrolled = enroll(client, operator_headers, images.tom_hanks(), "Tom Hanks")
    wait_for_job(client, operator_headers, enrolled["job_id"])
    probe = images.another_photo(images.tom_hanks(), scale=2.0)
    job = _submit_verify(client, operator_headers, image=probe, person_id=enrolled["person_id"])
    assert job["result"]["same_person"] is True
    assert job["result"]["person_id"] == enrolled["person_id"]
    strict = _submit_verify(client, operator_headers, image=probe, person_id=enrolled["person_id"], threshold="0.95")
    assert strict["result"]["same_person"] is False  # the request's threshold applies


def test_verify_input_errors(client, operator_headers):
    missing = client.post("/api/v1/verify", data={}, headers=operator_headers, content_type="multipart/form-data")
    assert missing.status_code == 400
    unknown_person = client.post(
        "/api/v1/verify",
        data={"image": upload(images.tom_hanks()), "person_id": "00000000-0000-0000-0000-000000000000"},
        headers=operator_headers,
        content_type="multipart/form-data",
    )
    assert unknown_person.status_code == 404
    no_face = _submit_verify(client, operator_headers, image_a=images.tom_hanks(), image_b=images.no_face_photo())
    assert no_face["error"]["code"] == "no_face"


def _blurred(data: bytes, radius: float) -> bytes:
    image = Image.open(io.BytesIO(data)).convert("RGB").resize((224, 224))
    return images.encode(image.filter(ImageFilter.GaussianBlur(radius)), quality=95)


def _small_face(data: bytes, side: int) -> bytes:
    canvas = Image.new("RGB", (400, 400), (128, 128, 128))
    canvas.paste(Image.open(io.BytesIO(data)).convert("RGB").resize((side, side)), (180, 180))
    return images.encode(canvas, quality=95)


def test_enrollment_quality_gates(client, operator_headers):
    sharp = enroll(client, operator_headers, _blurred(images.tom_hanks(), 0), "Sharp")
    accepted = wait_for_job(client, operator_headers, sharp["job_id"])
    assert accepted["status"] == "succeeded", accepted
    quality = accepted["result"]["quality"]
    assert set(quality) == {"face_size", "det_score", "sharpness", "brightness", "yaw", "pitch", "roll"}
    assert abs(quality["yaw"]) < 30

    blurred = enroll(client, operator_headers, _blurred(images.tom_hanks(), 6), "Blurred")
    rejected = wait_for_job(client, operator_headers, blurred["job_id"])
    assert rejected["status"] == "failed"
    assert rejected["error"]["code"] == "too_blurry"


def test_small_faces_are_refused_at_enrollment_but_still_recognized(client, operator_headers):
    small = _small_face(images.tom_hanks(), 44)  # the face itself is ~32 px wide
    enrolled = enroll(client, operator_headers, small, "Small")
    job = wait_for_job(client, operator_headers, enrolled["job_id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] in ("face_too_small", "no_face")


def test_recognition_reports_quality_per_face(client, operator_headers):
    enrolled = enroll(client, operator_headers, images.tom_hanks(), "Tom Hanks")
    wait_for_job(client, operator_headers, enrolled["job_id"])
    response = client.post(
        "/api/v1/recognize",
        data={"image": upload(images.group_photo())},
        headers=operator_headers,
        content_type="multipart/form-data",
    )
    job = wait_for_job(client, operator_headers, response.get_json()["job_id"])
    for face in job["result"]["faces"]:
        assert face["quality"]["face_size"] > 40
        assert face["quality"]["sharpness"] > 0
