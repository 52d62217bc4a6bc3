"""Several photos in one recognition job (`images` parts): each photo's faces in order, a photo
that cannot be read or shows no face fails alone, the budget counts every photo, and the photos
are gone once the job ends."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from sqlalchemy import func, select

from config import get_settings
from domain import budget
from domain.images import validate_image
from domain.models import Job
from tests import images
from tests.conftest import enroll, override_settings, recognize, upload, wait_for_job
from tests.stack.test_webhooks import Receiver

pytestmark = pytest.mark.usefixtures("worker")
MULTIPART = "multipart/form-data"


def _submit(client, headers, photos: list[bytes], query: str = "", **fields: str):
    parts = [upload(data, filename=f"photo-{i}.jpg") for i, data in enumerate(photos)]
    return client.post(
        f"/api/v1/recognize{query}", data={"images": parts, **fields}, headers=headers, content_type=MULTIPART
    )


def _jobs(db) -> int:
    return db.execute(select(func.count()).select_from(Job)).scalar_one()


def test_each_photo_gets_its_own_faces_in_order_and_a_bad_one_fails_alone(client, operator_headers, db):
    enrolled = enroll(client, operator_headers, images.tom_hanks(), "Tom Hanks")
    assert wait_for_job(client, operator_headers, enrolled["job_id"])["status"] == "succeeded"
    tom_again = images.another_photo(images.tom_hanks(), scale=2.0)
    photos = [tom_again, images.group_photo(), images.no_face_photo(), b"this is not a photo"]

    response = _submit(client, operator_headers, photos, "?wait=30")

    assert response.status_code == 200, response.get_json()
    job = response.get_json()
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert [len(photo["faces"]) for photo in result["photos"]] == [1, 6, 0, 0]
    tom = result["photos"][0]["faces"][0]
    assert tom["matches"][0]["person_id"] == enrolled["person_id"]
    assert {"bbox", "keypoints", "pose", "quality_for_recognition"} <= set(tom)
    assert all(face["matches"] == [] for face in result["photos"][1]["faces"])
    assert result["photos"][2]["error"]["code"] == "no_face"
    refused = result["photos"][3]["error"]
    assert refused["code"] in ("invalid_image", "unsupported_media_type") and refused["file"] == "photo-3.jpg"
    assert "error" not in result["photos"][0] and "error" not in result["photos"][1]

    # The same faces and similarities as the photos sent one by one: batching changes nothing.
    alone = recognize(client, operator_headers, tom_again)["result"]["faces"][0]
    assert alone["bbox"] == tom["bbox"]
    assert alone["matches"][0]["similarity"] == pytest.approx(tom["matches"][0]["similarity"], abs=1e-3)
    group_alone = recognize(client, operator_headers, images.group_photo())["result"]["faces"]
    assert [f["bbox"] for f in group_alone] == [f["bbox"] for f in result["photos"][1]["faces"]]

    # Every photo read counts against the budget; none of their bytes outlive the job.
    stored = db.get(Job, uuid.UUID(job["id"]))
    db.refresh(stored)
    readable = [validate_image(p, settings=get_settings()) for p in photos[:3]]
    assert stored.cost == sum(budget.image_cost(info) for info in readable)
    assert db.execute(select(Job.input_image).where(Job.id == stored.id)).scalar_one() is None


def test_a_long_poll_and_the_job_document_carry_the_photos(client, operator_headers):
    enrolled = enroll(client, operator_headers, images.tom_hanks(), "Tom Hanks")
    assert wait_for_job(client, operator_headers, enrolled["job_id"])["status"] == "succeeded"
    submitted = _submit(client, operator_headers, [images.tom_hanks(), images.group_photo()])
    assert submitted.status_code == 202, submitted.get_json()
    job_id = submitted.get_json()["job_id"]
    polled = client.get(f"/api/v1/jobs/{job_id}?wait=30", headers=operator_headers).get_json()
    assert polled["status"] == "succeeded"
    assert [len(photo["faces"]) for photo in polled["result"]["photos"]] == [1, 6]


def test_too_many_photos_none_readable_or_both_fields_are_refused_and_leave_nothing(client, operator_headers, db):
    before = _jobs(db)
    with override_settings(RECOGNIZE_MAX_IMAGES="2"):
        too_many = _submit(client, operator_headers, [images.tom_hanks()] * 3)
    assert too_many.status_code == 400
    assert too_many.get_json()["error"]["code"] == "too_many_images"
    assert "RECOGNIZE_MAX_IMAGES" in too_many.get_json()["error"]["message"]

    unreadable = _submit(client, operator_headers, [b"not a photo", b"nor this"])
    assert unreadable.status_code == 400
    error = unreadable.get_json()["error"]
    assert error["code"] == "invalid_image" and [p["file"] for p in error["photos"]] == ["photo-0.jpg", "photo-1.jpg"]

    both = client.post(
        "/api/v1/recognize",
        data={"image": upload(images.tom_hanks()), "images": [upload(images.tom_hanks())]},
        headers=operator_headers,
        content_type=MULTIPART,
    )
    assert both.status_code == 400 and both.get_json()["error"]["code"] == "invalid_field"

    neither = client.post(
        "/api/v1/recognize", data={"gallery": "default"}, headers=operator_headers, content_type=MULTIPART
    )
    assert neither.status_code == 400 and neither.get_json()["error"]["code"] == "missing_field"
    assert _jobs(db) == before


def test_deleting_a_person_redacts_its_matches_in_every_photo(client, operator_headers):
    enrolled = enroll(client, operator_headers, images.tom_hanks(), "Tom Hanks")
    assert wait_for_job(client, operator_headers, enrolled["job_id"])["status"] == "succeeded"
    tom_again = images.another_photo(images.tom_hanks(), scale=2.0)
    job = _submit(client, operator_headers, [tom_again, images.group_photo(), tom_again], "?wait=30").get_json()
    assert [bool(p["faces"][0]["matches"]) for p in job["result"]["photos"]] == [True, False, True]

    assert client.delete(f"/api/v1/persons/{enrolled['person_id']}", headers=operator_headers).status_code == 204
    after = client.get(f"/api/v1/jobs/{job['id']}", headers=operator_headers).get_json()["result"]
    assert enrolled["person_id"] not in str(after) and "Tom Hanks" not in str(after)
    assert after["redacted_matches"] == 2


def test_its_webhook_posts_the_job_with_every_photo_once(client, operator_headers):
    enrolled = enroll(client, operator_headers, images.tom_hanks(), "Tom Hanks")
    assert wait_for_job(client, operator_headers, enrolled["job_id"])["status"] == "succeeded"
    hook = Receiver([])
    try:
        submitted = _submit(
            client, operator_headers, [images.group_photo(), images.tom_hanks()], webhook_url=hook.url
        ).get_json()
        hook.wait_for(1)
        headers, body = hook.requests[0]
        document = json.loads(body)
        assert document["id"] == submitted["job_id"] and headers["X-FaceAPI-Event"] == "job.succeeded"
        assert [len(photo["faces"]) for photo in document["result"]["photos"]] == [6, 1]
        time.sleep(0.5)
        assert len(hook.requests) == 1
    finally:
        hook.close()


def test_in_a_gallery_with_recurring_unknowns_each_photos_stranger_is_sighted(client, operator_headers):
    gallery = f"door-{uuid.uuid4().hex[:6]}"
    body = {"name": gallery, "unknowns": {"enabled": True, "retention_days": 30}}
    assert client.post("/api/v1/galleries", json=body, headers=operator_headers).status_code == 201
    tom = images.tom_hanks()
    photos = [tom, images.another_photo(tom), images.another_photo(tom, scale=1.6)]

    job = _submit(client, operator_headers, photos, "?wait=30", gallery=gallery).get_json()

    assert job["status"] == "succeeded", job
    strangers = [photo["faces"][0]["unknown"] for photo in job["result"]["photos"]]
    assert len({stranger["id"] for stranger in strangers}) == 1  # the same stranger, seen three times
    assert [stranger["sightings"] for stranger in strangers] == [1, 2, 3]
    assert "recurring_unknowns" not in job["result"]
