"""Fixing who a face belongs to: merging a person enrolled twice into one, and moving one face
enrolled under the wrong person, within a gallery, audited, with the permissions of editing persons."""

from __future__ import annotations

import pytest

from tests import images
from tests.conftest import bearer, enroll, login, make_account, recognize, upload, wait_for_job

pytestmark = pytest.mark.usefixtures("worker")
TOM = images.tom_hanks()
TOM_2 = images.another_photo(TOM, scale=2.0)
STRANGER = images.crop(images.group_photo(), images.ONE_FACE_OF_GROUP)
MULTIPART = "multipart/form-data"


def _person(client, headers, image: bytes, name: str, **fields) -> dict:
    accepted = enroll(client, headers, image, name, **fields)
    job = wait_for_job(client, headers, accepted["job_id"])
    assert job["status"] == "succeeded", job
    return client.get(f"/api/v1/persons/{accepted['person_id']}", headers=headers).get_json()


def _add_face(client, headers, person_id: str, image: bytes, **fields) -> dict:
    response = client.post(
        f"/api/v1/persons/{person_id}/faces",
        data={"image": upload(image), **fields},
        headers=headers,
        content_type=MULTIPART,
    )
    assert response.status_code == 202, response.get_json()
    job = wait_for_job(client, headers, response.get_json()["job_id"])
    assert job["status"] == "succeeded", job
    return job["result"]


def _audit(client, headers, action: str) -> list[dict]:
    return client.get(f"/api/v1/audit?action={action}", headers=headers).get_json()["items"]


def test_merging_moves_every_face_deletes_the_source_and_is_audited(client, operator_headers, admin_headers):
    kept = _person(client, operator_headers, TOM, "Tom Hanks", external_id="tom")
    twice = _person(client, operator_headers, TOM_2, "T. Hanks")

    response = client.post(f"/api/v1/persons/{twice['id']}/merge", json={"into": kept["id"]}, headers=operator_headers)
    assert response.status_code == 200, response.get_json()
    merged = response.get_json()
    assert merged["id"] == kept["id"] and merged["name"] == "Tom Hanks" and merged["external_id"] == "tom"
    assert merged["face_count"] == 2
    assert {face["id"] for face in merged["faces"]} == {kept["faces"][0]["id"], twice["faces"][0]["id"]}
    assert all(face["crop_url"].startswith(f"/api/v1/persons/{kept['id']}/") for face in merged["faces"])
    assert client.get(merged["faces"][1]["crop_url"], headers=operator_headers).status_code == 200
    assert client.get(f"/api/v1/persons/{twice['id']}", headers=operator_headers).status_code == 404

    matches = recognize(client, operator_headers, TOM_2)["result"]["faces"][0]["matches"]
    assert [match["person_id"] for match in matches] == [kept["id"]]
    (event,) = _audit(client, admin_headers, "person.merge")
    assert event["target_id"] == kept["id"] and event["details"]["source_id"] == twice["id"]
    assert event["details"]["faces_moved"] == 1


def test_a_merge_is_refused_across_galleries_into_itself_and_into_nobody(client, operator_headers):
    one = _person(client, operator_headers, TOM, "Tom Hanks")
    elsewhere = _person(client, operator_headers, TOM_2, "Tom Hanks", gallery="other")

    across = client.post(f"/api/v1/persons/{one['id']}/merge", json={"into": elsewhere["id"]}, headers=operator_headers)
    assert across.status_code == 409
    assert across.get_json()["error"]["code"] == "different_galleries"
    itself = client.post(f"/api/v1/persons/{one['id']}/merge", json={"into": one["id"]}, headers=operator_headers)
    assert itself.status_code == 400 and itself.get_json()["error"]["code"] == "same_person"
    nobody = client.post(
        f"/api/v1/persons/{one['id']}/merge",
        json={"into": "00000000-0000-0000-0000-000000000000"},
        headers=operator_headers,
    )
    assert nobody.status_code == 404 and nobody.get_json()["error"]["code"] == "person_not_found"
    wrong_field = client.post(f"/api/v1/persons/{one['id']}/merge", json={"to": one["id"]}, headers=operator_headers)
    assert wrong_field.status_code == 400
    for person in (one, elsewhere):  # nothing changed
        assert client.get(f"/api/v1/persons/{person['id']}", headers=operator_headers).get_json()["face_count"] == 1


def test_merging_and_moving_need_the_rights_of_editing_persons(client, operator_headers, operator_account):
    one = _person(client, operator_headers, TOM, "Tom Hanks")
    two = _person(client, operator_headers, STRANGER, "Someone")
    user = bearer(login(client, *make_account("user", colleague_of=operator_account[0]))["access_token"])
    stranger_admin = bearer(login(client, *make_account("admin"))["access_token"])

    assert client.post(f"/api/v1/persons/{one['id']}/merge", json={"into": two["id"]}, headers=user).status_code == 403
    other_org = client.post(f"/api/v1/persons/{one['id']}/merge", json={"into": two["id"]}, headers=stranger_admin)
    assert other_org.status_code == 404
    face = one["faces"][0]["id"]
    move = f"/api/v1/persons/{one['id']}/faces/{face}/move"
    assert client.post(move, json={"person_id": two["id"]}, headers=user).status_code == 403
    assert client.post(move, json={"person_id": two["id"]}, headers=stranger_admin).status_code == 404
    assert client.get(f"/api/v1/persons/{one['id']}", headers=operator_headers).get_json()["face_count"] == 1


def test_moving_a_face_gives_it_to_the_other_person_and_is_audited(client, operator_headers, admin_headers):
    tom = _person(client, operator_headers, TOM, "Tom Hanks")
    wrong = _add_face(client, operator_headers, tom["id"], STRANGER, force="true")  # the wrong person's photo
    someone = _person(client, operator_headers, images.another_photo(STRANGER, scale=1.5), "Someone")

    response = client.post(
        f"/api/v1/persons/{tom['id']}/faces/{wrong['face_id']}/move",
        json={"person_id": someone["id"]},
        headers=operator_headers,
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["id"] == someone["id"]
    assert wrong["face_id"] in {face["id"] for face in response.get_json()["faces"]}
    left = client.get(f"/api/v1/persons/{tom['id']}", headers=operator_headers).get_json()
    assert [face["id"] for face in left["faces"]] == [tom["faces"][0]["id"]]

    matches = recognize(client, operator_headers, STRANGER)["result"]["faces"][0]["matches"]
    assert [match["person_id"] for match in matches] == [someone["id"]]
    (event,) = _audit(client, admin_headers, "person.move_face")
    assert event["details"] == {"face_id": wrong["face_id"], "to_person_id": someone["id"]}


def test_moving_a_face_the_person_does_not_have_is_404(client, operator_headers):
    tom = _person(client, operator_headers, TOM, "Tom Hanks")
    someone = _person(client, operator_headers, STRANGER, "Someone")
    response = client.post(
        f"/api/v1/persons/{tom['id']}/faces/{someone['faces'][0]['id']}/move",
        json={"person_id": someone["id"]},
        headers=operator_headers,
    )
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "face_not_found"
