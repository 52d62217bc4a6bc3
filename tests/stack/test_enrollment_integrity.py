"""Enrollment you can trust: no face under the wrong person, nothing enrolled twice, no debris.

Each test reproduces a defect seen by using the service on the real stack: the API,
PostgreSQL, Redis and a worker running the model.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests import images
from tests.conftest import enroll, submit_batch, upload, wait_batch, wait_for_job, zip_archive

pytestmark = pytest.mark.usefixtures("worker")
TOM = images.tom_hanks()
TOM_2 = images.another_photo(TOM, scale=2.0)
STRANGER = images.crop(images.group_photo(), images.ONE_FACE_OF_GROUP)
MULTIPART = "multipart/form-data"


def _galleries(client, headers) -> set[str]:
    return {g["name"] for g in client.get("/api/v1/galleries", headers=headers).get_json()["items"]}


def _persons(client, headers, gallery: str = "default") -> list[dict]:
    response = client.get(f"/api/v1/persons?gallery={gallery}", headers=headers)
    return response.get_json()["items"] if response.status_code == 200 else []


def _add_face(client, headers, person_id: str, image: bytes, **fields) -> dict:
    response = client.post(
        f"/api/v1/persons/{person_id}/faces",
        data={"image": upload(image), **fields},
        headers=headers,
        content_type=MULTIPART,
    )
    assert response.status_code == 202, response.get_json()
    return wait_for_job(client, headers, response.get_json()["job_id"])


# --- 1. file names that are not unique ---------------------------------------------------------


def test_two_uploads_with_one_file_name_are_refused_and_leave_nothing(client, operator_headers):
    manifest = [{"file": "img1.jpg", "name": "Tom Hanks"}, {"file": "img1.jpg", "name": "Someone Else"}]
    response = submit_batch(
        client,
        operator_headers,
        {
            "gallery": "staff",
            "manifest": json.dumps(manifest),
            "images": [upload(TOM, "img1.jpg"), upload(STRANGER, "img1.jpg")],
        },
    )
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "duplicate_file" and error["file"] == "img1.jpg"
    assert "staff" not in _galleries(client, operator_headers)


def test_two_manifest_rows_naming_one_file_are_refused(client, operator_headers):
    manifest = [{"file": "a.png", "name": "Tom Hanks"}, {"file": "a.png", "name": "Someone Else"}]
    response = submit_batch(
        client, operator_headers, {"manifest": json.dumps(manifest), "images": [upload(TOM, "a.png")]}
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "duplicate_file"


def test_an_upload_no_row_names_is_refused(client, operator_headers):
    manifest = [{"file": "a.png", "name": "Tom Hanks"}]
    files = [upload(TOM, "a.png"), upload(STRANGER, "forgotten.jpg")]
    response = submit_batch(client, operator_headers, {"manifest": json.dumps(manifest), "images": files})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "unreferenced_file" and error["files"] == ["forgotten.jpg"]
    assert _persons(client, operator_headers) == []


# --- 2. Idempotency-Key ---------------------------------------------------------------------


def test_a_key_reused_with_another_batch_is_refused(client, operator_headers):
    key = f"k-{uuid.uuid4()}"
    manifest = json.dumps([{"file": "a.png", "name": "Tom Hanks", "external_id": "th"}])
    first = submit_batch(client, operator_headers, {"manifest": manifest, "images": [upload(TOM, "a.png")]}, key=key)
    assert first.status_code == 202
    again = submit_batch(client, operator_headers, {"manifest": manifest, "images": [upload(TOM, "a.png")]}, key=key)
    assert again.status_code == 202 and again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"].endswith(first.get_json()["batch_id"])

    other_gallery = submit_batch(
        client, operator_headers, {"gallery": "other", "manifest": manifest, "images": [upload(TOM, "a.png")]}, key=key
    )
    other_photo = submit_batch(
        client, operator_headers, {"manifest": manifest, "images": [upload(TOM_2, "a.png")]}, key=key
    )
    for response in (other_gallery, other_photo):
        assert response.status_code == 409, response.get_json()
        assert response.get_json()["error"]["code"] == "idempotency_key_reused"
    assert "other" not in _galleries(client, operator_headers)
    batches = client.get("/api/v1/enrollments", headers=operator_headers).get_json()["items"]
    assert [b["id"] for b in batches] == [first.get_json()["batch_id"]]


def test_a_key_on_single_submissions(client, operator_headers):
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    form = {"name": "Tom Hanks", "consent": "true"}
    first = client.post(
        "/api/v1/persons",
        data={**form, "image": upload(TOM)},
        headers={**operator_headers, **key},
        content_type=MULTIPART,
    )
    again = client.post(
        "/api/v1/persons",
        data={**form, "image": upload(TOM)},
        headers={**operator_headers, **key},
        content_type=MULTIPART,
    )
    assert first.status_code == again.status_code == 202
    assert again.get_json() == first.get_json()
    assert len(_persons(client, operator_headers)) == 1

    # The same key on another route is another request.
    recognize = client.post(
        "/api/v1/recognize", data={"image": upload(TOM)}, headers={**operator_headers, **key}, content_type=MULTIPART
    )
    assert recognize.status_code == 409
    assert recognize.get_json()["error"]["code"] == "idempotency_key_reused"

    # A retry with ?wait answers the finished job, from the same submission.
    fresh = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    submit = client.post(
        "/api/v1/recognize", data={"image": upload(TOM)}, headers={**operator_headers, **fresh}, content_type=MULTIPART
    )
    waited = client.post(
        "/api/v1/recognize?wait=30",
        data={"image": upload(TOM)},
        headers={**operator_headers, **fresh},
        content_type=MULTIPART,
    )
    assert waited.status_code == 200 and waited.get_json()["id"] == submit.get_json()["job_id"]


def test_a_refused_request_does_not_use_up_its_key(client, operator_headers):
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    refused = client.post(
        "/api/v1/persons",
        data={"name": "Tom Hanks", "image": upload(TOM)},  # no consent
        headers={**operator_headers, **key},
        content_type=MULTIPART,
    )
    assert refused.status_code == 400
    fixed = client.post(
        "/api/v1/persons",
        data={"name": "Tom Hanks", "consent": "true", "image": upload(TOM)},
        headers={**operator_headers, **key},
        content_type=MULTIPART,
    )
    assert fixed.status_code == 202, fixed.get_json()


# --- 3. debris from failed batches ------------------------------------------------------------


def test_a_batch_person_whose_photos_all_fail_is_removed(client, operator_headers):
    manifest = [
        {"file": "tom.png", "name": "Tom Hanks"},
        {"file": "empty1.jpg", "name": "Nobody"},
        {"file": "empty2.jpg", "name": "Nobody"},
    ]
    files = [
        upload(TOM, "tom.png"),
        upload(images.no_face_photo(), "empty1.jpg"),
        upload(images.no_face_photo((400, 300)), "empty2.jpg"),
    ]
    batch_id = submit_batch(client, operator_headers, {"manifest": json.dumps(manifest), "images": files}).get_json()[
        "batch_id"
    ]
    batch = wait_batch(client, operator_headers, batch_id)
    assert (batch["succeeded"], batch["failed"]) == (1, 2)
    assert [item["index"] for item in batch["items"]] == [0, 1, 2]  # manifest order
    assert batch["items"][1]["faces_detected"] == 0
    assert [p["name"] for p in _persons(client, operator_headers)] == ["Tom Hanks"]


def test_a_batch_that_fails_every_item_leaves_no_gallery(client, operator_headers):
    manifest = [{"file": "empty.jpg", "name": "Nobody"}]
    response = submit_batch(
        client,
        operator_headers,
        {
            "gallery": "doomed",
            "manifest": json.dumps(manifest),
            "images": [upload(images.no_face_photo(), "empty.jpg")],
        },
    )
    batch = wait_batch(client, operator_headers, response.get_json()["batch_id"])
    assert batch["status"] == "failed" and batch["gallery"] == "doomed"
    assert "doomed" not in _galleries(client, operator_headers)
    item = batch["items"][0]
    job = client.get(f"/api/v1/jobs/{item['job_id']}", headers=operator_headers).get_json()
    assert job["error"]["code"] == "no_face"  # the job stays readable


def test_a_failed_first_enrollment_leaves_no_gallery_it_created(client, operator_headers):
    enrolled = enroll(client, operator_headers, images.no_face_photo(), "Nobody", gallery="fresh")
    assert wait_for_job(client, operator_headers, enrolled["job_id"])["error"]["code"] == "no_face"
    assert "fresh" not in _galleries(client, operator_headers)


# --- 4. the same photo twice -------------------------------------------------------------------


def test_the_same_photo_is_never_enrolled_twice(client, operator_headers):
    first = enroll(client, operator_headers, TOM, "Tom Hanks", external_id="th")
    stored = wait_for_job(client, operator_headers, first["job_id"])["result"]
    again = _add_face(client, operator_headers, first["person_id"], TOM)
    assert again["status"] == "succeeded"
    assert again["result"]["duplicate"] is True and again["result"]["face_id"] == stored["face_id"]
    faces = client.get(f"/api/v1/persons/{first['person_id']}/faces", headers=operator_headers).get_json()["items"]
    assert len(faces) == 1


def test_a_batch_rerun_after_an_interruption_adds_nothing(client, operator_headers):
    manifest = json.dumps([{"file": "a.png", "name": "Tom Hanks"}, {"file": "b.jpg", "name": "Tom Hanks"}])

    def run() -> dict:
        files = [upload(TOM, "a.png"), upload(TOM_2, "b.jpg")]
        response = submit_batch(client, operator_headers, {"manifest": manifest, "images": files})
        return wait_batch(client, operator_headers, response.get_json()["batch_id"])

    first, rerun = run(), run()
    assert first["succeeded"] == rerun["succeeded"] == 2
    assert all(item["duplicate"] for item in rerun["items"])
    persons = _persons(client, operator_headers)
    assert [(p["name"], p["face_count"]) for p in persons] == [("Tom Hanks", 2)]


def test_a_photo_enrolled_for_one_person_is_refused_for_another(client, operator_headers):
    tom = enroll(client, operator_headers, TOM, "Tom Hanks")
    wait_for_job(client, operator_headers, tom["job_id"])
    impostor = enroll(client, operator_headers, TOM, "Not Tom")
    job = wait_for_job(client, operator_headers, impostor["job_id"])
    assert job["error"]["code"] == "photo_enrolled_elsewhere" and job["error"]["person_id"] == tom["person_id"]
    assert [p["name"] for p in _persons(client, operator_headers)] == ["Tom Hanks"]


# --- 5. a photo of someone else --------------------------------------------------------------


def test_a_photo_of_someone_else_is_not_added_to_a_person(client, operator_headers, admin_headers):
    tom = enroll(client, operator_headers, TOM, "Tom Hanks")
    wait_for_job(client, operator_headers, tom["job_id"])
    refused = _add_face(client, operator_headers, tom["person_id"], STRANGER)
    assert refused["status"] == "failed"
    assert refused["error"]["code"] == "face_mismatch"
    assert refused["error"]["best_similarity"] < refused["error"]["threshold"]
    same = _add_face(client, operator_headers, tom["person_id"], TOM_2)
    assert same["status"] == "succeeded" and same["result"]["consistency"] >= 0.25

    forced = _add_face(client, operator_headers, tom["person_id"], STRANGER, force="true")
    assert forced["status"] == "succeeded"
    person = client.get(f"/api/v1/persons/{tom['person_id']}", headers=operator_headers).get_json()
    assert person["face_count"] == 3
    audit = client.get(
        f"/api/v1/audit?action=person.add_face&target_id={tom['person_id']}", headers=admin_headers
    ).get_json()
    assert [event["details"].get("force") for event in audit["items"]].count(True) == 1


# --- 6. ambiguous photos ----------------------------------------------------------------------


def test_a_group_photo_is_not_enrolled_as_one_person(client, operator_headers):
    enrolled = enroll(client, operator_headers, images.group_photo(), "Who")
    job = wait_for_job(client, operator_headers, enrolled["job_id"])
    assert job["error"]["code"] == "multiple_faces"
    assert job["error"]["faces_detected"] == 6
    assert _persons(client, operator_headers) == []


# --- 9. ZIP archives made the usual way ---------------------------------------------------------


def test_a_zip_of_the_parent_folder_enrolls_its_people(client, operator_headers):
    archive = zip_archive(
        {
            "staff/Tom Hanks/1.png": TOM,
            "staff/Tom Hanks/2.jpg": TOM_2,
            "staff/.DS_Store": b"\x00\x00\x00\x01Bud1",
            "__MACOSX/staff/Tom Hanks/._1.png": b"\x00\x05\x16\x07",
            "staff/Tom Hanks/.hidden.jpg": b"junk",
        }
    )
    response = submit_batch(client, operator_headers, {"archive": upload(archive, "staff.zip")})
    assert response.status_code == 202, response.get_json()
    batch = wait_batch(client, operator_headers, response.get_json()["batch_id"])
    assert (batch["status"], batch["total"], batch["succeeded"]) == ("succeeded", 2, 2)
    assert [item["file"] for item in batch["items"]] == ["Tom Hanks/1.png", "Tom Hanks/2.jpg"]
    assert [p["name"] for p in _persons(client, operator_headers)] == ["Tom Hanks"]


# --- inspecting and repairing a person ------------------------------------------------------------


def test_inspect_and_repair_a_person(client, operator_headers):
    tom = enroll(client, operator_headers, TOM, "Tom Hanks", external_id="emp-1")
    wait_for_job(client, operator_headers, tom["job_id"])
    wrong = _add_face(client, operator_headers, tom["person_id"], STRANGER, force="true")
    faces_url = f"/api/v1/persons/{tom['person_id']}/faces"
    faces = client.get(faces_url, headers=operator_headers).get_json()["items"]
    assert len(faces) == 2
    assert {"id", "created_at", "det_score", "bbox", "quality", "model", "photo_sha256_prefix"} <= set(faces[0])

    # The stranger is recognized as Tom until the wrong face is removed.
    def names_for_stranger() -> list[str]:
        response = client.post(
            "/api/v1/recognize?wait=30",
            data={"image": upload(STRANGER)},
            headers=operator_headers,
            content_type=MULTIPART,
        )
        return [m["name"] for face in response.get_json()["result"]["faces"] for m in face["matches"]]

    assert names_for_stranger() == ["Tom Hanks"]
    assert client.delete(f"{faces_url}/{wrong['result']['face_id']}", headers=operator_headers).status_code == 204
    assert names_for_stranger() == []
    missing = client.delete(f"{faces_url}/{wrong['result']['face_id']}", headers=operator_headers)
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "face_not_found"

    changed = client.patch(
        f"/api/v1/persons/{tom['person_id']}",
        json={"name": "Thomas Hanks", "external_id": "emp-2", "metadata": {"team": "actors"}},
        headers=operator_headers,
    )
    assert changed.status_code == 200, changed.get_json()
    assert (changed.get_json()["name"], changed.get_json()["metadata"]) == ("Thomas Hanks", {"team": "actors"})
    found = client.get("/api/v1/persons?gallery=default&external_id=emp-2", headers=operator_headers).get_json()
    assert [p["id"] for p in found["items"]] == [tom["person_id"]]

    result = client.post(
        "/api/v1/recognize?wait=30", data={"image": upload(TOM_2)}, headers=operator_headers, content_type=MULTIPART
    ).get_json()
    match = result["result"]["faces"][0]["matches"][0]
    assert (match["external_id"], match["metadata"]) == ("emp-2", {"team": "actors"})

    too_big = client.patch(
        f"/api/v1/persons/{tom['person_id']}", json={"metadata": {"x": "y" * 5000}}, headers=operator_headers
    )
    assert too_big.status_code == 400
    unknown = client.patch(f"/api/v1/persons/{tom['person_id']}", json={"nmae": "x"}, headers=operator_headers)
    assert "did you mean 'name'" in unknown.get_json()["error"]["message"]


def test_person_exists_names_the_existing_person(client, operator_headers):
    first = enroll(client, operator_headers, TOM, "Tom Hanks", external_id="emp-7")
    second = client.post(
        "/api/v1/persons",
        data={"name": "Tom", "consent": "true", "external_id": "emp-7", "image": upload(TOM_2)},
        headers=operator_headers,
        content_type=MULTIPART,
    )
    assert second.status_code == 409
    assert second.get_json()["error"]["person_id"] == first["person_id"]


def test_person_queries_are_checked(client, operator_headers):
    misspelled = client.get("/api/v1/persons?galery=staff", headers=operator_headers)
    assert misspelled.status_code == 400
    assert "did you mean 'gallery'" in misspelled.get_json()["error"]["message"]
    unknown_gallery = client.get("/api/v1/persons?gallery=nosuch", headers=operator_headers)
    assert unknown_gallery.status_code == 404
