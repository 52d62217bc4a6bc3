"""POST /api/v1/search: who a stored face looks like, from its embedding, without uploading a photo
(the faces are enrolled from real photos by the worker)."""

from __future__ import annotations

import pytest

from tests import images
from tests.conftest import bearer, enroll, login, make_account, upload, wait_for_job

pytestmark = pytest.mark.usefixtures("worker")


def _enrolled(client, headers, photo: bytes, name: str, gallery: str) -> tuple[str, str]:
    """(person_id, face_id) of a new person enrolled from `photo`."""
    accepted = enroll(client, headers, photo, name, gallery=gallery)
    job = wait_for_job(client, headers, accepted["job_id"])
    assert job["status"] == "succeeded", job
    return accepted["person_id"], job["result"]["face_id"]


def _add_face(client, headers, person_id: str, photo: bytes) -> str:
    answer = client.post(
        f"/api/v1/persons/{person_id}/faces?wait=30",
        data={"image": upload(photo)},
        headers=headers,
        content_type="multipart/form-data",
    )
    job = answer.get_json()
    job = job if job.get("status") == "succeeded" else wait_for_job(client, headers, job["job_id"])
    assert job["status"] == "succeeded", job
    return job["result"]["face_id"]


def _email_of(client, headers) -> str:
    return client.get("/api/v1/auth/me", headers=headers).get_json()["email"]


def _search(client, headers, **body) -> dict:
    answer = client.post("/api/v1/search", json=body, headers=headers)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def test_search_by_a_stored_face_finds_its_person_and_never_the_face_itself(client, operator_headers):
    tom = images.tom_hanks()
    tom_id, first_face = _enrolled(client, operator_headers, tom, "Tom Hanks", "search-by-face")
    stranger = images.crop(images.group_photo(), images.ONE_FACE_OF_GROUP)
    stranger_id, stranger_face = _enrolled(client, operator_headers, stranger, "Stranger", "search-by-face")

    # One face only: nothing else in the gallery looks like it (the face itself is left out).
    alone = _search(client, operator_headers, face_id=first_face)
    assert alone["matches"] == [] and alone["person_id"] == tom_id and alone["gallery"] == "search-by-face"

    _add_face(client, operator_headers, tom_id, images.another_photo(tom, scale=2.0))
    found = _search(client, operator_headers, face_id=first_face)
    assert [m["person_id"] for m in found["matches"]] == [tom_id]
    assert found["threshold"] <= found["matches"][0]["similarity"] < 0.999  # another photo, not the face itself
    assert found["threshold_source"] in ("match_fpir", "match_threshold")
    assert _search(client, operator_headers, face_id=stranger_face)["matches"] == []

    strict = _search(client, operator_headers, face_id=first_face, threshold=0.95)
    assert strict["matches"] == [] and strict["threshold"] == 0.95 and strict["threshold_source"] == "request"


def test_search_another_gallery_of_the_organisation(client, operator_headers):
    tom = images.tom_hanks()
    _, staff_face = _enrolled(client, operator_headers, tom, "Tom", "search-staff")
    watched_id, _ = _enrolled(client, operator_headers, images.distinct_copy(tom, "watch"), "T. H.", "search-watch")
    found = _search(client, operator_headers, face_id=staff_face, gallery="search-watch", top_k=3)
    assert found["gallery"] == "search-watch"
    assert [m["person_id"] for m in found["matches"]] == [watched_id]
    assert found["matches"][0]["name"] == "T. H."


def test_search_refuses_what_it_cannot_answer(client, operator_headers):
    _, face_id = _enrolled(client, operator_headers, images.tom_hanks(), "Tom", "search-errors")
    missing = client.post(
        "/api/v1/search", json={"face_id": "00000000-0000-0000-0000-000000000000"}, headers=operator_headers
    )
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "face_not_found"
    no_gallery = client.post(
        "/api/v1/search", json={"face_id": face_id, "gallery": "Search-Errors"}, headers=operator_headers
    )
    assert no_gallery.status_code == 404 and no_gallery.get_json()["error"]["did_you_mean"] == "search-errors"
    bad = client.post("/api/v1/search", json={"face_id": "not-a-uuid", "top_k": 0}, headers=operator_headers)
    assert bad.status_code == 400
    unknown_field = client.post("/api/v1/search", json={"face_id": face_id, "topk": 3}, headers=operator_headers)
    assert unknown_field.status_code == 400

    # An API key limited to another gallery cannot see the face, nor search a gallery outside its scope.
    admin = bearer(
        login(client, *make_account("admin", colleague_of=_email_of(client, operator_headers)))["access_token"]
    )
    key = client.post("/api/v1/api-keys", json={"name": "elsewhere", "galleries": ["elsewhere"]}, headers=admin)
    scoped = bearer(key.get_json()["key"])
    hidden = client.post("/api/v1/search", json={"face_id": face_id}, headers=scoped)
    assert hidden.status_code == 404 and hidden.get_json()["error"]["code"] == "face_not_found"

    # Another organisation's face answers as a missing one.
    outsider = bearer(login(client, *make_account("operator"))["access_token"])
    foreign = client.post("/api/v1/search", json={"face_id": face_id}, headers=outsider)
    assert foreign.status_code == 404 and foreign.get_json()["error"]["code"] == "face_not_found"
