"""Choosing the face to enroll from a photo with several (`target_face`, x,y,w,h as Azure's
targetFace): the detected face that overlaps it most (IoU at least 0.5) is enrolled whatever the
others, and that person is then recognized; a box over no face is refused naming the faces found."""

from __future__ import annotations

import json

import pytest

from tests import images
from tests.conftest import enroll, recognize, submit_batch, upload, wait_batch, wait_for_job

pytestmark = pytest.mark.usefixtures("worker")
GROUP = images.group_photo()
MULTIPART = "multipart/form-data"


def _finished(client, headers, accepted: dict) -> dict:
    return wait_for_job(client, headers, accepted["job_id"])


def _enroll_face(client, headers, name: str, target: str) -> dict:
    """Enroll `name` from the group photo's face `target`; the finished job."""
    return _finished(client, headers, enroll(client, headers, GROUP, name, target_face=target))


def _faces_of_group(client, headers) -> list[str]:
    """The group photo's faces as target_face values, from the refusal of an unchosen enrollment."""
    job = _finished(client, headers, enroll(client, headers, GROUP, "Nobody In Particular"))
    assert job["status"] == "failed" and job["error"]["code"] == "multiple_faces", job
    assert "target_face" in job["error"]["message"]
    targets = job["error"]["target_faces"]
    assert len(targets) == job["error"]["faces_detected"] >= 4
    return targets


def _box(target: str) -> tuple[int, int, int, int]:
    x, y, w, h = (int(v) for v in target.split(","))
    return x, y, w, h


def _matched_box(result: dict, person_id: str) -> list[float]:
    """The box of the one face of a recognition that names `person_id`."""
    (face,) = [f for f in result["faces"] if any(m["person_id"] == person_id for m in f["matches"])]
    return face["bbox"]


def _loosely(target: str) -> str:
    """The box a person would draw around that face: shifted and larger, still overlapping it well."""
    x, y, w, h = _box(target)
    return f"{x - w // 10},{y + h // 10},{int(w * 1.1)},{int(h * 1.05)}"


def test_target_face_enrolls_the_chosen_face_of_a_group_photo_and_it_is_recognized(client, operator_headers):
    targets = _faces_of_group(client, operator_headers)
    chosen = targets[2]
    accepted = enroll(client, operator_headers, GROUP, "Third Face", target_face=_loosely(chosen))
    job = _finished(client, operator_headers, accepted)
    assert job["status"] == "succeeded", job
    x, y, w, h = _box(chosen)
    assert job["result"]["faces_detected"] == len(targets)
    assert job["result"]["bbox"] == pytest.approx([x, y, x + w, y + h], abs=1.5)

    # Recognized in the group photo: on that face, and on no other.
    result = recognize(client, operator_headers, GROUP)["result"]
    assert _matched_box(result, accepted["person_id"]) == pytest.approx([x, y, x + w, y + h], abs=1.5)
    # And in another photo of that face: a crop around it, mirrored and darkened.
    around = (max(0, x - w), max(0, y - h), x + 2 * w, y + 2 * h)
    other = images.another_photo(images.crop(GROUP, around), scale=1.5)
    matches = recognize(client, operator_headers, other)["result"]["faces"][0]["matches"]
    assert matches and matches[0]["person_id"] == accepted["person_id"]


def test_each_face_of_one_group_photo_may_be_enrolled_for_its_own_person(client, operator_headers):
    targets = _faces_of_group(client, operator_headers)
    first = _enroll_face(client, operator_headers, "First", targets[0])
    second = _enroll_face(client, operator_headers, "Second", targets[1])
    assert first["status"] == second["status"] == "succeeded", (first, second)
    assert first["result"]["face_id"] != second["result"]["face_id"]
    # The same face of the same photo for a third name is the photo enrolled elsewhere.
    again = _enroll_face(client, operator_headers, "Third", targets[0])
    assert again["status"] == "failed" and again["error"]["code"] == "photo_enrolled_elsewhere"


def test_a_target_over_no_face_is_refused_naming_the_faces_found(client, operator_headers):
    targets = _faces_of_group(client, operator_headers)
    accepted = enroll(client, operator_headers, GROUP, "Nobody", target_face="0,0,40,40")
    job = _finished(client, operator_headers, accepted)
    assert job["status"] == "failed"
    error = job["error"]
    assert error["code"] == "target_face_not_found"
    assert error["target_faces"] == targets and all(t in error["message"] for t in targets)
    assert client.get(f"/api/v1/persons/{accepted['person_id']}", headers=operator_headers).status_code == 404


@pytest.mark.parametrize("value", ["1,2,3", "a,b,c,d", "10,10,0,20", "10,10,-5,20", "nan,1,2,3"])
def test_a_malformed_target_face_is_a_clear_400(client, operator_headers, value):
    form = {"name": "X", "consent": "true", "image": upload(GROUP), "target_face": value}
    response = client.post("/api/v1/persons", data=form, headers=operator_headers, content_type=MULTIPART)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_field" and "target_face" in error["message"]


def test_target_face_chooses_the_face_of_an_added_photo(client, operator_headers):
    targets = _faces_of_group(client, operator_headers)
    x, y, w, h = _box(targets[3])
    alone = images.crop(GROUP, (max(0, x - w), max(0, y - h), x + 2 * w, y + 2 * h))
    person = _finished(client, operator_headers, enroll(client, operator_headers, alone, "Fourth"))
    assert person["status"] == "succeeded", person
    response = client.post(
        f"/api/v1/persons/{person['result']['person_id']}/faces",
        data={"image": upload(GROUP), "target_face": targets[3]},
        headers=operator_headers,
        content_type=MULTIPART,
    )
    assert response.status_code == 202, response.get_json()
    added = wait_for_job(client, operator_headers, response.get_json()["job_id"])
    assert added["status"] == "succeeded", added
    assert added["result"]["consistency"] > 0.6  # the same face, not the largest of the group


def test_batch_rows_choose_their_face(client, operator_headers):
    targets = _faces_of_group(client, operator_headers)
    manifest = [
        {"file": "a.jpg", "name": "Face A", "target_face": targets[0]},
        {"file": "b.jpg", "name": "Face B", "target_face": [float(v) for v in targets[1].split(",")]},
        {"file": "c.jpg", "name": "Face C"},  # no choice: the group is ambiguous
        {"file": "d.jpg", "name": "Face D", "target_face": "1,2"},
    ]
    files = [upload(GROUP, name) for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg")]
    response = submit_batch(
        client, operator_headers, {"gallery": "group", "manifest": json.dumps(manifest), "images": files}
    )
    assert response.status_code == 202, response.get_json()
    batch = wait_batch(client, operator_headers, response.get_json()["batch_id"])
    outcome = [(item["status"], (item["error"] or {}).get("code")) for item in batch["items"]]
    assert outcome == [
        ("succeeded", None),
        ("succeeded", None),
        ("failed", "multiple_faces"),
        ("failed", "invalid_field"),
    ]
