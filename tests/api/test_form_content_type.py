"""A photo call (POST /persons, /recognize, ...) sent as JSON or as the raw photo is told to send
multipart/form-data, naming what it sent. Before, JSON {"name": "Ada", ...} to POST /persons
answered "The field 'name' is required." though the name was there, and a raw photo the same."""

from __future__ import annotations

from sqlalchemy import func, select

from domain.models import Job
from tests import images


def _jobs(db) -> int:
    db.rollback()
    return db.execute(select(func.count()).select_from(Job)).scalar_one()


def test_json_to_an_enrollment_is_told_to_send_multipart(client, operator_headers, db):
    before = _jobs(db)
    response = client.post(
        "/api/v1/persons", json={"name": "Ada", "consent": True, "gallery": "staff"}, headers=operator_headers
    )
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "multipart_required"
    assert "multipart/form-data" in error["message"] and "application/json" in error["message"]
    assert _jobs(db) == before


def test_a_raw_photo_to_recognize_is_told_to_send_multipart(client, operator_headers, db):
    before = _jobs(db)
    response = client.post(
        "/api/v1/recognize", data=images.group_photo(), content_type="image/jpeg", headers=operator_headers
    )
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "multipart_required" and "image/jpeg" in error["message"]
    assert _jobs(db) == before


def test_a_request_without_a_body_still_names_the_missing_field(client, operator_headers):
    response = client.post("/api/v1/recognize", headers=operator_headers)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "missing_field"
