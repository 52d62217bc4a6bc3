"""Organisations and API keys: galleries shared inside an organisation, invisible to
any other; service accounts with a role, a gallery scope, their own rate-limit bucket and an
audit trail, revoked at once."""

from __future__ import annotations

import json

import pytest

from tests import images
from tests.conftest import bearer, login, make_account, override_settings, upload, wait_for_job

pytestmark = pytest.mark.usefixtures("worker")
MULTIPART = "multipart/form-data"
TOM = images.tom_hanks()
TOM_2 = images.another_photo(TOM, scale=2.0)


def _enroll(client, headers, gallery: str, image: bytes = TOM, name: str = "Tom Hanks"):
    return client.post(
        "/api/v1/persons?wait=30",
        data={"name": name, "consent": "true", "gallery": gallery, "image": upload(image)},
        headers=headers,
        content_type=MULTIPART,
    )


def _recognize(client, headers, gallery: str, image: bytes = TOM_2):
    return client.post(
        "/api/v1/recognize?wait=30",
        data={"gallery": gallery, "image": upload(image)},
        headers=headers,
        content_type=MULTIPART,
    )


def _organisation(client) -> tuple[dict, dict, str]:
    """(admin headers, operator headers, admin email) of a new organisation."""
    admin_email, password = make_account("admin")
    admin = bearer(login(client, admin_email, password)["access_token"])
    operator = bearer(login(client, *make_account("operator", colleague_of=admin_email))["access_token"])
    return admin, operator, admin_email


def test_two_organisations_with_the_same_gallery_names_never_see_each_other(client):
    a_admin, a_operator, _ = _organisation(client)
    b_admin, b_operator, _ = _organisation(client)
    a_person = _enroll(client, a_operator, "staff").get_json()
    b_person = _enroll(client, b_operator, "staff", image=images.crop(images.group_photo(), images.ONE_FACE_OF_GROUP))
    b_person = b_person.get_json()
    assert a_person["status"] == b_person["status"] == "succeeded"
    batch = client.post(
        "/api/v1/enrollments",
        data={"consent": "true", "gallery": "staff", "manifest": json.dumps([{"file": "a.jpg", "name": "Again"}])}
        | {"images": [upload(images.no_face_photo(), "a.jpg")]},
        headers=a_operator,
        content_type=MULTIPART,
    ).get_json()

    # The admin of A sees its operator's work; B sees none of it, whatever its role.
    assert client.get(f"/api/v1/persons/{a_person['person_id']}", headers=a_admin).status_code == 200
    for headers in (b_admin, b_operator):
        assert client.get(f"/api/v1/persons/{a_person['person_id']}", headers=headers).status_code == 404
        assert client.get(f"/api/v1/jobs/{a_person['job_id']}", headers=headers).status_code == 404
        assert client.get(f"/api/v1/enrollments/{batch['batch_id']}", headers=headers).status_code == 404
        listed = client.get("/api/v1/persons?gallery=staff", headers=headers).get_json()["items"]
        assert [p["id"] for p in listed] == [b_person["person_id"]]
    # Tom is known in A only: B's recognition of him names nobody of A.
    in_b = _recognize(client, b_operator, "staff").get_json()["result"]["faces"][0]["matches"]
    assert a_person["person_id"] not in [m["person_id"] for m in in_b]
    in_a = _recognize(client, a_operator, "staff").get_json()["result"]["faces"][0]["matches"]
    assert in_a[0]["person_id"] == a_person["person_id"]


def test_an_admin_creates_accounts_in_its_organisation(client):
    admin, _, _ = _organisation(client)
    created = client.post(
        "/api/v1/accounts",
        json={"email": "New.Colleague@example.com", "password": "a long first password", "role": "operator"},
        headers=admin,
    )
    assert created.status_code == 201, created.get_json()
    me = client.get("/api/v1/auth/me", headers=admin).get_json()
    assert created.get_json()["organisation_id"] == me["organisation_id"]
    colleague = bearer(login(client, "new.colleague@example.com", "a long first password")["access_token"])
    assert _enroll(client, colleague, "shared").get_json()["status"] == "succeeded"
    assert [g["name"] for g in client.get("/api/v1/galleries", headers=admin).get_json()["items"]] == ["shared"]
    emails = [a["email"] for a in client.get("/api/v1/accounts", headers=admin).get_json()["items"]]
    assert "new.colleague@example.com" in emails and len(emails) == 3
    again = client.post(
        "/api/v1/accounts", json={"email": "new.colleague@example.com", "password": "x" * 12}, headers=admin
    )
    assert again.status_code == 409


def _key(client, admin: dict, **fields) -> dict:
    response = client.post("/api/v1/api-keys", json={"name": "front desk", **fields}, headers=admin)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_a_scoped_operator_key_works_in_its_gallery_only_until_revoked(client):
    admin, operator, _ = _organisation(client)
    assert _enroll(client, operator, "elsewhere", image=TOM_2).get_json()["status"] == "succeeded"
    key = _key(client, admin, role="operator", galleries=["desk"])
    assert key["key"].startswith("fk_") and key["prefix"] == key["key"][: len(key["prefix"])]
    as_key = bearer(key["key"])

    enrolled = _enroll(client, as_key, "desk").get_json()
    assert enrolled["status"] == "succeeded"
    matches = _recognize(client, {"X-API-Key": key["key"]}, "desk").get_json()["result"]["faces"][0]["matches"]
    assert matches[0]["person_id"] == enrolled["person_id"]
    for response in (_enroll(client, as_key, "elsewhere"), _recognize(client, as_key, "elsewhere")):
        assert response.status_code == 403 and response.get_json()["error"]["code"] == "gallery_out_of_scope"
    elsewhere = client.get("/api/v1/persons?gallery=desk", headers=as_key).get_json()["items"]
    assert [p["id"] for p in elsewhere] == [enrolled["person_id"]]
    assert client.get("/api/v1/accounts", headers=as_key).status_code == 403  # an operator's role

    listed = client.get("/api/v1/api-keys", headers=admin).get_json()["items"]
    assert listed[0]["last_used_at"] and "key" not in listed[0]
    audit = client.get(f"/api/v1/audit?target_id={enrolled['person_id']}", headers=admin).get_json()["items"]
    assert audit[0]["api_key_id"] == key["id"]

    assert client.delete(f"/api/v1/api-keys/{key['id']}", headers=admin).status_code == 204
    refused = client.get("/api/v1/persons?gallery=desk", headers=as_key)
    assert refused.status_code == 401 and refused.get_json()["error"]["code"] == "api_key_invalid"


def test_a_key_cannot_outrank_its_creator_and_has_its_own_rate_limit(client):
    admin, operator, admin_email = _organisation(client)
    operator_key = client.post("/api/v1/api-keys", json={"name": "x", "role": "admin"}, headers=operator)
    assert operator_key.status_code == 403  # only admins manage keys
    key = _key(client, admin, role="user")
    assert client.get("/api/v1/persons", headers=bearer(key["key"])).status_code == 403  # a user key
    operator_key = bearer(_key(client, admin, role="operator")["key"])
    # A limit of its own (3, not test_auth's 2): flask-limiter's counters are per limit, so this
    # test's use of the address's bucket does not carry into another test within the minute.
    with override_settings(RATELIMIT_SUBMIT="3/minute"):
        statuses = [_recognize(client, operator_key, "nowhere").status_code for _ in range(4)]
        assert statuses == [404, 404, 404, 429]
        # The key's bucket is its own: a person at the same address is not held back.
        assert _recognize(client, operator, "nowhere").status_code == 404


def test_signup_is_off_by_default_outside_development(monkeypatch):
    from config import load_settings

    monkeypatch.delenv("SIGNUP_ENABLED", raising=False)
    monkeypatch.setenv("FACEAPI_ENV", "production")
    monkeypatch.setenv("JWT_SECRET_KEY", "x" * 40)
    assert load_settings().signup_enabled is False
    monkeypatch.setenv("FACEAPI_ENV", "development")
    assert load_settings().signup_enabled is True


def test_a_job_document_of_a_key_is_the_organisations(client):
    admin, operator, _ = _organisation(client)
    key = bearer(_key(client, admin, role="operator")["key"])
    job = _enroll(client, key, "desk").get_json()
    assert wait_for_job(client, operator, job["job_id"])["status"] == "succeeded"  # a colleague sees it


def test_an_api_key_has_idempotency_keys_of_its_own(client):
    admin, _, _ = _organisation(client)
    key = bearer(_key(client, admin, role="operator")["key"])
    form = {"name": "Tom Hanks", "consent": "true", "image": upload(TOM)}
    first = client.post("/api/v1/persons", data=form, headers={**key, "Idempotency-Key": "k1"}, content_type=MULTIPART)
    assert first.status_code == 202, first.get_json()
    form = {"name": "Tom Hanks", "consent": "true", "image": upload(TOM)}
    again = client.post("/api/v1/persons", data=form, headers={**key, "Idempotency-Key": "k1"}, content_type=MULTIPART)
    assert again.get_json() == first.get_json()
    # The admin who made the key has its own keys: the same string is a new request there.
    other = client.post(
        "/api/v1/recognize",
        data={"image": upload(TOM)},
        headers={**admin, "Idempotency-Key": "k1"},
        content_type=MULTIPART,
    )
    assert other.status_code == 202
