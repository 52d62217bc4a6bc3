"""Erasure reaches every copy: deleting an account redacts its face profile from the recognitions
that named it (as deleting a person does), and a deleted person's batch items forget the file
names they were sent with (a file or folder name is a name); a deleted organisation's audit
events forget its accounts' email addresses."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select

from domain.db import session_scope
from domain.models import AuditEvent
from tests import images
from tests.conftest import bearer, login, make_account, submit_batch, upload, wait_batch, zip_archive

pytestmark = pytest.mark.usefixtures("worker")
MULTIPART = "multipart/form-data"
TOM = images.tom_hanks()
TOM_2 = images.another_photo(TOM, scale=2.0)
OTHER_FACE = images.crop(images.group_photo(), images.ONE_FACE_OF_GROUP)
PASSWORD = "correct horse battery"  # every make_account's


def _me(client, headers: dict) -> dict:
    return client.get("/api/v1/auth/me", headers=headers).get_json()


def _recognize_in(client, headers: dict, gallery: str) -> dict:
    response = client.post(
        "/api/v1/recognize?wait=30",
        data={"gallery": gallery, "image": upload(TOM_2)},
        headers=headers,
        content_type=MULTIPART,
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "succeeded", response.get_json()
    return response.get_json()


@pytest.mark.parametrize("deleted_by", ["admin", "self"])
def test_deleting_an_account_redacts_its_face_profile_from_earlier_recognitions(client, deleted_by):
    admin_email, password = make_account("admin")
    admin = bearer(login(client, admin_email, password)["access_token"])
    user_email, _ = make_account("user", colleague_of=admin_email)
    user = bearer(login(client, user_email, PASSWORD)["access_token"])
    profile = client.post(
        "/api/v1/auth/me/face?wait=30",
        data={"image": upload(TOM), "consent": "true", "name": "Zelda Quixote"},
        headers=user,
        content_type=MULTIPART,
    ).get_json()
    assert profile["status"] == "succeeded", profile
    person_id = profile["result"]["person_id"]
    recognitions = [_recognize_in(client, admin, "profile")["id"] for _ in range(2)]
    first = client.get(f"/api/v1/jobs/{recognitions[0]}", headers=admin).get_json()
    assert first["result"]["faces"][0]["matches"][0]["name"] == "Zelda Quixote"

    if deleted_by == "admin":
        user_id = _me(client, user)["id"]
        assert client.delete(f"/api/v1/accounts/{user_id}", headers=admin).status_code == 204
    else:
        assert client.delete("/api/v1/auth/me", json={"password": PASSWORD}, headers=user).status_code == 204

    for job_id in recognitions:
        job = client.get(f"/api/v1/jobs/{job_id}", headers=admin)
        assert job.status_code == 200
        assert "Zelda Quixote" not in job.get_data(as_text=True) and person_id not in job.get_data(as_text=True)
        assert job.get_json()["result"]["faces"][0]["matches"] == []
        assert job.get_json()["result"]["redacted_matches"] == 1


def test_a_deleted_persons_batch_items_forget_their_file_names(client, operator_headers):
    archive = zip_archive(
        {
            "Zelda Quixote/1.jpg": TOM,
            "Zelda Quixote/broken.jpg": b"not a photo at all",
            "Someone Else/1.jpg": OTHER_FACE,
        }
    )
    response = submit_batch(client, operator_headers, {"archive": upload(archive, "staff.zip")})
    assert response.status_code == 202, response.get_json()
    zipped = wait_batch(client, operator_headers, response.get_json()["batch_id"])
    manifest = [{"file": "Yorick Erasure.jpg", "name": "Y. E."}]
    response = submit_batch(
        client,
        operator_headers,
        {
            "manifest": json.dumps(manifest),
            "images": [upload(images.another_photo(TOM, scale=1.5), "Yorick Erasure.jpg")],
        },
    )
    assert response.status_code == 202, response.get_json()
    listed = wait_batch(client, operator_headers, response.get_json()["batch_id"])
    zelda = next(item for item in zipped["items"] if item["file"] == "Zelda Quixote/1.jpg")
    yorick = listed["items"][0]
    assert zelda["status"] == yorick["status"] == "succeeded", (zipped, listed)

    for person_id in (zelda["person_id"], yorick["person_id"]):
        assert client.delete(f"/api/v1/persons/{person_id}", headers=operator_headers).status_code == 204

    for batch, secrets in ((zipped, ("Zelda", "Quixote")), (listed, ("Yorick", "Erasure", "Y. E."))):
        text = client.get(f"/api/v1/enrollments/{batch['id']}", headers=operator_headers).get_data(as_text=True)
        for item in batch["items"]:
            text += client.get(f"/api/v1/jobs/{item['job_id']}", headers=operator_headers).get_data(as_text=True)
        for secret in secrets:
            assert secret not in text, (secret, text)
    # Only the deleted person's items forget: someone else's stays as sent.
    after = client.get(f"/api/v1/enrollments/{zipped['id']}", headers=operator_headers).get_json()["items"]
    assert "Someone Else/1.jpg" in [item["file"] for item in after]


def test_a_deleted_organisations_audit_events_forget_its_email_addresses(client):
    admin_email, password = make_account("admin")
    admin = bearer(login(client, admin_email, password)["access_token"])
    organisation_id = _me(client, admin)["organisation_id"]
    colleague = f"colleague-{uuid.uuid4().hex[:6]}@example.com"
    created = client.post(
        "/api/v1/accounts", json={"email": colleague, "password": PASSWORD, "role": "user"}, headers=admin
    )
    assert created.status_code == 201
    assert client.delete(f"/api/v1/accounts/{created.get_json()['id']}", headers=admin).status_code == 204
    assert client.delete("/api/v1/auth/me", json={"password": PASSWORD}, headers=admin).status_code == 204
    with session_scope() as session:
        events = session.execute(
            select(AuditEvent).where(AuditEvent.organisation_id == uuid.UUID(organisation_id))
        ).scalars()
        stored = [(event.action, event.actor_email, json.dumps(event.details)) for event in events]
    assert {action for action, *_ in stored} >= {"account.create", "account.delete"}
    for address in (admin_email, colleague):
        assert address not in json.dumps(stored), stored
