"""Face crops: every enrolled face keeps the aligned 112x112 crop the recognizer embedded, as a small
JPEG that people with access to the face can look at, and that goes with the face, its person, its
gallery, its account and its organisation (read back from the database itself)."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from sqlalchemy import text

from tests import images
from tests.conftest import bearer, enroll, login, make_account, override_settings, upload, wait_for_job

pytestmark = pytest.mark.usefixtures("worker")
TOM = images.tom_hanks()
MULTIPART = "multipart/form-data"


def _enrolled_face(client, headers, image: bytes = TOM, **fields) -> tuple[str, dict]:
    """Enroll a person from `image`; its id and its one face's document."""
    accepted = enroll(client, headers, image, "Tom Hanks", **fields)
    job = wait_for_job(client, headers, accepted["job_id"])
    assert job["status"] == "succeeded", job
    person = client.get(f"/api/v1/persons/{accepted['person_id']}", headers=headers).get_json()
    return accepted["person_id"], person["faces"][0]


def _crops_in_database(*face_ids: str) -> list[bytes | None]:
    """The crop column of these faces, as stored (rows that no longer exist are absent)."""
    from domain.db import session_scope

    with session_scope() as session:
        rows = session.execute(
            text("SELECT crop FROM faces WHERE id = ANY(CAST(:ids AS uuid[]))"), {"ids": list(face_ids)}
        )
        return [row.crop for row in rows]


def _crop_bytes_anywhere(crop: bytes) -> int:
    """Faces holding these very bytes, whatever their id."""
    from domain.db import session_scope

    with session_scope() as session:
        return session.execute(text("SELECT count(*) FROM faces WHERE crop = :crop"), {"crop": crop}).scalar_one()


def test_an_enrolled_face_keeps_its_aligned_crop_as_a_small_jpeg(client, operator_headers):
    person_id, face = _enrolled_face(client, operator_headers)
    assert face["crop_url"] == f"/api/v1/persons/{person_id}/faces/{face['id']}/crop"

    response = client.get(face["crop_url"], headers=operator_headers)
    assert response.status_code == 200
    assert response.mimetype == "image/jpeg"
    assert "private" in response.headers["Cache-Control"]
    picture = Image.open(io.BytesIO(response.data))
    assert picture.format == "JPEG" and picture.size == (112, 112)
    assert len(response.data) < 10_000
    listed = client.get(f"/api/v1/persons/{person_id}/faces", headers=operator_headers).get_json()["items"]
    assert listed[0]["crop_url"] == face["crop_url"]
    assert _crops_in_database(face["id"]) == [response.data]


def test_the_crop_shows_the_face_it_was_embedded_from(client, operator_headers):
    """The bundled Tom Hanks photo is itself an aligned 112x112 crop: the stored crop is that face."""
    _, face = _enrolled_face(client, operator_headers)
    stored = Image.open(io.BytesIO(client.get(face["crop_url"], headers=operator_headers).data)).convert("L")
    original = Image.open(io.BytesIO(TOM)).convert("L").resize((112, 112))
    import numpy as np

    difference = np.abs(np.asarray(stored, dtype=float) - np.asarray(original, dtype=float)).mean()
    assert difference < 25, difference


def test_a_crop_answers_only_who_may_see_its_face(client, operator_headers, operator_account):
    person_id, face = _enrolled_face(client, operator_headers)
    stranger = bearer(login(client, *make_account("admin"))["access_token"])
    colleague_user = bearer(login(client, *make_account("user", colleague_of=operator_account[0]))["access_token"])
    for headers in (stranger, colleague_user):
        response = client.get(face["crop_url"], headers=headers)
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "person_not_found"
    assert client.get(face["crop_url"]).status_code == 401
    other_face = f"/api/v1/persons/{person_id}/faces/00000000-0000-0000-0000-000000000000/crop"
    assert client.get(other_face, headers=operator_headers).get_json()["error"]["code"] == "face_not_found"


def test_a_user_sees_the_crop_of_their_own_face_profile(client):
    headers = bearer(login(client, *make_account("user"))["access_token"])
    response = client.post(
        "/api/v1/auth/me/face",
        data={"image": upload(TOM), "consent": "true"},
        headers=headers,
        content_type=MULTIPART,
    )
    assert response.status_code == 202, response.get_json()
    assert wait_for_job(client, headers, response.get_json()["job_id"])["status"] == "succeeded"
    person = client.get(f"/api/v1/persons/{response.get_json()['person_id']}", headers=headers).get_json()
    crop = client.get(person["faces"][0]["crop_url"], headers=headers)
    assert crop.status_code == 200 and crop.mimetype == "image/jpeg"


def test_store_face_crops_off_keeps_no_crop(client, operator_headers):
    with override_settings(STORE_FACE_CROPS="false"):
        person_id, face = _enrolled_face(client, operator_headers)
    assert face["crop_url"] is None
    response = client.get(f"/api/v1/persons/{person_id}/faces/{face['id']}/crop", headers=operator_headers)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "crop_not_found"
    assert _crops_in_database(face["id"]) == [None]


# --- erasure: no crop byte survives its owner ----------------------------------------------------


def _stored_crop(client, headers, face: dict) -> tuple[bytes, int]:
    """The face's crop, and how many faces hold these very bytes now (the same photo enrolled by
    other tests' organisations gives the same crop)."""
    crop = client.get(face["crop_url"], headers=headers).data
    assert _crops_in_database(face["id"]) == [crop]
    return crop, _crop_bytes_anywhere(crop)


def _assert_erased(face: dict, stored: tuple[bytes, int]) -> None:
    crop, copies_before = stored
    assert _crops_in_database(face["id"]) == []
    assert _crop_bytes_anywhere(crop) == copies_before - 1


def test_deleting_a_face_erases_its_crop(client, operator_headers):
    person_id, face = _enrolled_face(client, operator_headers)
    crop = _stored_crop(client, operator_headers, face)
    assert client.delete(f"/api/v1/persons/{person_id}/faces/{face['id']}", headers=operator_headers).status_code == 204
    _assert_erased(face, crop)
    assert client.get(face["crop_url"], headers=operator_headers).status_code == 404


def test_deleting_a_person_erases_its_crops(client, operator_headers):
    person_id, face = _enrolled_face(client, operator_headers)
    crop = _stored_crop(client, operator_headers, face)
    assert client.delete(f"/api/v1/persons/{person_id}", headers=operator_headers).status_code == 204
    _assert_erased(face, crop)


def test_deleting_a_gallery_erases_its_crops(client, operator_headers):
    _, face = _enrolled_face(client, operator_headers, gallery="doomed")
    crop = _stored_crop(client, operator_headers, face)
    assert client.delete("/api/v1/galleries/doomed", headers=operator_headers).status_code == 204
    _assert_erased(face, crop)


def test_deleting_an_account_erases_its_face_profile_crop(client, operator_account):
    """A user's own face profile; the organisation (with its operator) stays."""
    email, password = make_account("user", colleague_of=operator_account[0])
    headers = bearer(login(client, email, password)["access_token"])
    response = client.post(
        "/api/v1/auth/me/face", data={"image": upload(TOM), "consent": "true"}, headers=headers, content_type=MULTIPART
    )
    assert wait_for_job(client, headers, response.get_json()["job_id"])["status"] == "succeeded"
    face = client.get(f"/api/v1/persons/{response.get_json()['person_id']}", headers=headers).get_json()["faces"][0]
    crop = _stored_crop(client, headers, face)
    gone = client.delete("/api/v1/auth/me", json={"password": password}, headers=headers)
    assert gone.status_code == 204, gone.get_json()
    _assert_erased(face, crop)


def test_deleting_an_organisation_erases_every_crop_of_it(client, operator_account, operator_headers):
    """Its last account leaving takes the organisation, its galleries, persons and faces."""
    _, face = _enrolled_face(client, operator_headers)
    _, other_face = _enrolled_face(client, operator_headers, image=images.another_photo(TOM, 2.0), gallery="second")
    stored = [_stored_crop(client, operator_headers, f) for f in (face, other_face)]
    gone = client.delete("/api/v1/auth/me", json={"password": operator_account[1]}, headers=operator_headers)
    assert gone.status_code == 204, gone.get_json()
    for erased, crop in zip((face, other_face), stored, strict=True):
        _assert_erased(erased, crop)
