"""End to end through the API, the queue, a real worker process with the real model, and pgvector."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from domain.models import Face, Job, Person
from tests import images
from tests.conftest import enroll, recognize, upload, wait_for_job

pytestmark = pytest.mark.usefixtures("worker")


def test_registered_person_is_recognized_in_another_photo(client, operator_headers):
    enrolled = enroll(client, operator_headers, images.tom_hanks(), "Tom Hanks", external_id="th-1")
    job = wait_for_job(client, operator_headers, enrolled["job_id"])
    assert job["status"] == "succeeded", job
    assert job["result"]["person_id"] == enrolled["person_id"]
    assert job["result"]["faces_detected"] == 1
    assert job["result"]["face_id"]

    result = recognize(client, operator_headers, images.another_photo(images.tom_hanks(), scale=2.0))
    assert result["status"] == "succeeded", result
    faces = result["result"]["faces"]
    assert len(faces) == 1
    best = faces[0]["matches"][0]
    assert best["person_id"] == enrolled["person_id"]
    assert best["name"] == "Tom Hanks"
    assert best["similarity"] >= result["result"]["threshold"]


def test_group_photo_lists_every_face_and_unregistered_people_do_not_match(client, operator_headers):
    enroll_job = enroll(client, operator_headers, images.tom_hanks(), "Tom Hanks")
    assert wait_for_job(client, operator_headers, enroll_job["job_id"])["status"] == "succeeded"

    result = recognize(client, operator_headers, images.group_photo())
    assert result["status"] == "succeeded"
    faces = result["result"]["faces"]
    assert len(faces) == 6
    for face in faces:
        x1, y1, x2, y2 = face["bbox"]
        assert x2 > x1 and y2 > y1
        assert face["det_score"] > 0.5
        assert face["matches"] == []  # nobody in t1.jpg is Tom Hanks
    areas = [(f["bbox"][2] - f["bbox"][0]) * (f["bbox"][3] - f["bbox"][1]) for f in faces]
    assert areas == sorted(areas, reverse=True)  # largest face first


def test_one_enrolled_member_of_a_group_is_found_among_six(client, operator_headers):
    member = images.crop(images.group_photo(), images.ONE_FACE_OF_GROUP)
    enrolled = enroll(client, operator_headers, member, "Second from left")
    assert wait_for_job(client, operator_headers, enrolled["job_id"])["result"]["faces_detected"] == 1

    result = recognize(client, operator_headers, images.another_photo(images.group_photo()), top_k="3")
    matched = [face for face in result["result"]["faces"] if face["matches"]]
    assert len(result["result"]["faces"]) == 6
    assert len(matched) == 1
    assert matched[0]["matches"][0]["person_id"] == enrolled["person_id"]


def test_max_faces_limits_the_faces_returned(client, operator_headers):
    enroll_job = enroll(client, operator_headers, images.tom_hanks(), "Tom Hanks")
    wait_for_job(client, operator_headers, enroll_job["job_id"])
    result = recognize(client, operator_headers, images.group_photo(), max_faces="2")
    assert len(result["result"]["faces"]) == 2


def test_photo_without_a_face_fails_with_no_face_and_leaves_no_person(client, operator_headers, db):
    enrolled = enroll(client, operator_headers, images.no_face_photo(), "Nobody")
    job = wait_for_job(client, operator_headers, enrolled["job_id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "no_face"
    assert client.get(f"/api/v1/persons/{enrolled['person_id']}", headers=operator_headers).status_code == 404
    assert db.get(Person, uuid.UUID(enrolled["person_id"])) is None

    enroll_job = enroll(client, operator_headers, images.tom_hanks(), "Tom Hanks")
    wait_for_job(client, operator_headers, enroll_job["job_id"])
    result = recognize(client, operator_headers, images.no_face_photo())
    assert result["status"] == "failed"
    assert result["error"]["code"] == "no_face"


def test_deleted_person_is_no_longer_matched_and_no_face_row_remains(client, operator_headers, db):
    enrolled = enroll(client, operator_headers, images.tom_hanks(), "Tom Hanks")
    wait_for_job(client, operator_headers, enrolled["job_id"])
    second = client.post(
        f"/api/v1/persons/{enrolled['person_id']}/faces",
        data={"image": upload(images.another_photo(images.tom_hanks(), scale=1.5))},
        headers=operator_headers,
        content_type="multipart/form-data",
    )
    assert second.status_code == 202
    assert wait_for_job(client, operator_headers, second.get_json()["job_id"])["status"] == "succeeded"
    person = client.get(f"/api/v1/persons/{enrolled['person_id']}", headers=operator_headers).get_json()
    assert person["face_count"] == 2
    assert {face["model"] for face in person["faces"]} == {"w600k_mbf"}

    deleted = client.delete(f"/api/v1/persons/{enrolled['person_id']}", headers=operator_headers)
    assert deleted.status_code == 204
    person_id = uuid.UUID(enrolled["person_id"])
    assert db.execute(select(func.count()).where(Face.person_id == person_id)).scalar_one() == 0

    result = recognize(client, operator_headers, images.another_photo(images.tom_hanks(), scale=2.0))
    assert result["result"]["faces"][0]["matches"] == []


def test_raw_upload_is_dropped_when_the_job_ends(client, operator_headers, db):
    enrolled = enroll(client, operator_headers, images.tom_hanks(), "Tom Hanks")
    wait_for_job(client, operator_headers, enrolled["job_id"])
    stored = db.execute(select(Job.input_image).where(Job.id == uuid.UUID(enrolled["job_id"]))).scalar_one()
    assert stored is None


def test_galleries_are_separate(client, operator_headers):
    enrolled = enroll(client, operator_headers, images.tom_hanks(), "Tom Hanks", gallery="actors")
    wait_for_job(client, operator_headers, enrolled["job_id"])
    probe = images.another_photo(images.tom_hanks(), scale=2.0)
    in_actors = recognize(client, operator_headers, probe, gallery="actors")
    assert in_actors["result"]["faces"][0]["matches"][0]["person_id"] == enrolled["person_id"]
    other = enroll(client, operator_headers, images.no_face_photo(), "placeholder", gallery="staff")
    wait_for_job(client, operator_headers, other["job_id"])
    missing = client.post(
        "/api/v1/recognize",
        data={"image": upload(probe), "gallery": "nobody-here"},
        headers=operator_headers,
        content_type="multipart/form-data",
    )
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "gallery_not_found"


def test_exif_rotated_photo_is_turned_upright_before_detection(client, operator_headers):
    import io

    from PIL import Image

    enrolled = enroll(client, operator_headers, images.tom_hanks(), "Tom Hanks")
    wait_for_job(client, operator_headers, enrolled["job_id"])
    upright = Image.open(io.BytesIO(images.another_photo(images.tom_hanks(), scale=2.0)))
    stored_sideways = upright.transpose(Image.Transpose.ROTATE_90)  # pixels lie on their side
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    buffer = io.BytesIO()
    stored_sideways.save(buffer, "JPEG", exif=exif, quality=92)
    result = recognize(client, operator_headers, buffer.getvalue())
    assert result["status"] == "succeeded", result
    assert result["result"]["faces"][0]["matches"][0]["person_id"] == enrolled["person_id"]


@pytest.mark.parametrize("mode", ["CMYK", "P", "LA", "I;16"])
def test_converted_image_modes_are_processed_and_matched(client, operator_headers, mode):
    import io

    import numpy as np
    from PIL import Image

    enrolled = enroll(client, operator_headers, images.tom_hanks(), "Tom Hanks")
    wait_for_job(client, operator_headers, enrolled["job_id"])
    probe = Image.open(io.BytesIO(images.another_photo(images.tom_hanks(), scale=2.0)))
    if mode == "I;16":
        gray = np.asarray(probe.convert("L"), dtype=np.uint16) * 257  # full 16-bit range
        data = images.encode(Image.fromarray(gray), "PNG")
    elif mode == "CMYK":
        data = images.encode(probe.convert("CMYK"), "JPEG", quality=92)
    else:
        data = images.encode(probe.convert(mode), "PNG")
    result = recognize(client, operator_headers, data)
    assert result["status"] == "succeeded", result
    assert result["result"]["faces"][0]["matches"][0]["person_id"] == enrolled["person_id"]
