"""One face, one name: a face enrolled for a new person, or added to a person, that matches another
person of the gallery is reported (`possible_duplicate_of`) or, with ENROLL_DUPLICATE_IDENTITY=refuse,
refused `identity_exists` unless forced (audited); and a nearly identical face (the same photo
re-encoded or with bytes appended, which byte-exact duplicate detection missed) is the duplicate it is."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from tests import images
from tests.conftest import (
    bearer,
    enroll,
    login,
    make_account,
    override_settings,
    submit_batch,
    upload,
    wait_batch,
    wait_for_job,
)

pytestmark = pytest.mark.usefixtures("worker")
TOM = images.tom_hanks()
TOM_2 = images.another_photo(TOM, scale=2.0)  # another photo of the same face
STRANGER = images.crop(images.group_photo(), images.ONE_FACE_OF_GROUP)
MULTIPART = "multipart/form-data"


def _enrolled(client, headers, image: bytes, name: str, **fields) -> dict:
    accepted = enroll(client, headers, image, name, **fields)
    return {**wait_for_job(client, headers, accepted["job_id"]), "person_id": accepted["person_id"]}


def _add_face(client, headers, person_id: str, image: bytes, **fields) -> dict:
    response = client.post(
        f"/api/v1/persons/{person_id}/faces",
        data={"image": upload(image), **fields},
        headers=headers,
        content_type=MULTIPART,
    )
    assert response.status_code == 202, response.get_json()
    return wait_for_job(client, headers, response.get_json()["job_id"])


def _face_count(client, headers, person_id: str) -> int:
    return client.get(f"/api/v1/persons/{person_id}", headers=headers).get_json()["face_count"]


# --- one face, two names ------------------------------------------------------------------------------


def test_a_face_another_person_has_is_reported_with_that_person(client, operator_headers):
    tom = _enrolled(client, operator_headers, TOM, "Tom Hanks", external_id="th-1")
    again = _enrolled(client, operator_headers, TOM_2, "Thomas H.")
    assert again["status"] == "succeeded", again
    (reported,) = again["result"]["possible_duplicate_of"]
    assert reported["person_id"] == tom["person_id"]
    assert reported["name"] == "Tom Hanks" and reported["external_id"] == "th-1"
    assert 0.5 < reported["similarity"] < 1

    someone = _enrolled(client, operator_headers, STRANGER, "Someone Else")
    assert someone["status"] == "succeeded" and someone["result"]["possible_duplicate_of"] == []
    added = _add_face(client, operator_headers, someone["person_id"], images.another_photo(TOM), force="true")
    assert added["status"] == "succeeded", added
    assert {r["person_id"] for r in added["result"]["possible_duplicate_of"]} == {tom["person_id"], again["person_id"]}


def test_refuse_fails_the_enrollment_and_force_enrolls_it_audited(client, operator_headers, admin_headers):
    tom = _enrolled(client, operator_headers, TOM, "Tom Hanks")
    with override_settings(ENROLL_DUPLICATE_IDENTITY="refuse"):
        refused = _enrolled(client, operator_headers, TOM_2, "Thomas H.")
        assert refused["status"] == "failed"
        error = refused["error"]
        assert error["code"] == "identity_exists"
        assert [r["person_id"] for r in error["possible_duplicate_of"]] == [tom["person_id"]]
        assert "force=true" in error["message"]
        # Nothing kept: the person the refused enrollment created is gone.
        assert client.get(f"/api/v1/persons/{refused['person_id']}", headers=operator_headers).status_code == 404

        forced = _enrolled(client, operator_headers, TOM_2, "Thomas H.", force="true")
        assert forced["status"] == "succeeded", forced
        assert [r["person_id"] for r in forced["result"]["possible_duplicate_of"]] == [tom["person_id"]]
        # A person unlike every other is enrolled as ever.
        assert _enrolled(client, operator_headers, STRANGER, "Someone Else")["status"] == "succeeded"
    events = client.get("/api/v1/audit?action=person.identity_forced", headers=admin_headers).get_json()["items"]
    (event,) = events
    assert event["target_id"] == forced["person_id"] and event["details"]["matched"] == [tom["person_id"]]


def test_a_user_may_not_force_an_enrollment(client, operator_account):
    user = bearer(login(client, *make_account("user", colleague_of=operator_account[0]))["access_token"])
    form = {"name": "X", "consent": "true", "image": upload(TOM), "force": "true"}
    assert client.post("/api/v1/persons", data=form, headers=user, content_type=MULTIPART).status_code == 403


def test_batches_report_it_per_item(client, operator_headers):
    tom = _enrolled(client, operator_headers, TOM, "Tom Hanks", gallery="team")
    manifest = [{"file": "t.jpg", "name": "Thomas H."}, {"file": "s.jpg", "name": "Someone Else"}]
    files = [upload(TOM_2, "t.jpg"), upload(STRANGER, "s.jpg")]
    response = submit_batch(
        client, operator_headers, {"gallery": "team", "manifest": json.dumps(manifest), "images": files}
    )
    assert response.status_code == 202, response.get_json()
    items = wait_batch(client, operator_headers, response.get_json()["batch_id"])["items"]
    assert [item["status"] for item in items] == ["succeeded", "succeeded"]
    assert [r["person_id"] for r in items[0]["possible_duplicate_of"]] == [tom["person_id"]]
    assert items[1]["possible_duplicate_of"] == []


def test_deleting_the_other_person_erases_it_from_the_reports(client, operator_headers):
    tom = _enrolled(client, operator_headers, TOM, "Tom Hanks")
    again = _enrolled(client, operator_headers, TOM_2, "Thomas H.")
    assert again["result"]["possible_duplicate_of"]
    assert client.delete(f"/api/v1/persons/{tom['person_id']}", headers=operator_headers).status_code == 204
    job = wait_for_job(client, operator_headers, again["id"])
    assert job["result"]["possible_duplicate_of"] == []
    assert "Tom Hanks" not in json.dumps(job)


# --- nearly identical faces: the same photo as other bytes ---------------------------------------------


def _reencoded(data: bytes, quality: int = 95) -> bytes:
    return images.encode(Image.open(io.BytesIO(data)).convert("RGB"), quality=quality)


def test_the_same_photo_with_bytes_appended_or_reencoded_adds_nothing_to_its_person(client, operator_headers):
    tom = _enrolled(client, operator_headers, TOM, "Tom Hanks")
    for copy in (TOM + b"\x00", TOM + b"\x00\x00", _reencoded(TOM)):
        job = _add_face(client, operator_headers, tom["person_id"], copy)
        assert job["status"] == "succeeded", job
        assert job["result"]["duplicate"] is True
        assert job["result"]["face_id"] == tom["result"]["face_id"]
    assert _face_count(client, operator_headers, tom["person_id"]) == 1
    # Another photo of the same face is a new face, as before.
    other = _add_face(client, operator_headers, tom["person_id"], TOM_2)
    assert other["status"] == "succeeded" and other["result"]["duplicate"] is False
    assert _face_count(client, operator_headers, tom["person_id"]) == 2


def test_the_same_photo_as_other_bytes_is_refused_for_another_person(client, operator_headers):
    tom = _enrolled(client, operator_headers, TOM, "Tom Hanks")
    for copy in (TOM + b"\x00", _reencoded(TOM, quality=90)):
        job = _enrolled(client, operator_headers, copy, "Not Tom")
        assert job["status"] == "failed", job
        assert job["error"]["code"] == "photo_enrolled_elsewhere"
        assert job["error"]["person_id"] == tom["person_id"]
        assert client.get(f"/api/v1/persons/{job['person_id']}", headers=operator_headers).status_code == 404
    someone = _enrolled(client, operator_headers, STRANGER, "Someone Else")
    forced = _add_face(client, operator_headers, someone["person_id"], TOM + b"\x00", force="true")
    assert forced["status"] == "failed" and forced["error"]["code"] == "photo_enrolled_elsewhere"
