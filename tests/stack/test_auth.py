"""Login, tokens and roles."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from flask_jwt_extended import create_access_token

from config import get_settings
from tests.conftest import bearer, login, make_account, override_settings


def test_login_returns_tokens(client, services):
    email, password = make_account("operator")
    tokens = login(client, email.upper(), password)  # emails are case-insensitive
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == get_settings().jwt_access_minutes * 60
    me = client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"]))
    body = me.get_json()
    assert (body["email"], body["role"]) == (email, "operator")


def test_wrong_password_and_unknown_email_look_the_same(client, services):
    email, _ = make_account("user")
    wrong = client.post("/api/v1/auth/login", json={"email": email, "password": "wrong password!"})
    unknown = client.post("/api/v1/auth/login", json={"email": "nobody@example.com", "password": "whatever12"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json() == unknown.get_json()


def test_routes_need_a_token(client, services):
    response = client.get("/api/v1/persons")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def _unsigned(token: str) -> str:
    _, payload, _ = token.split(".")
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    return f"{header}.{payload}."


@pytest.mark.parametrize("attack", ["tampered", "unsigned", "refresh_as_access", "garbage", "expired"])
def test_bad_tokens_are_rejected(client, app, services, attack):
    tokens = login(client, *make_account("admin"))
    if attack == "tampered":
        token = _tamper(tokens["access_token"])
    elif attack == "unsigned":
        token = _unsigned(tokens["access_token"])
    elif attack == "refresh_as_access":
        token = tokens["refresh_token"]
    elif attack == "garbage":
        token = "not.a.token"
    else:
        me = client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"])).get_json()
        with app.app_context():
            token = create_access_token(identity=me["id"], expires_delta=timedelta(seconds=-5))
    response = client.get("/api/v1/persons", headers=bearer(token))
    assert response.status_code == 401
    expected = {
        "expired": "token_expired",
        "refresh_as_access": "refresh_token_not_accepted",
        "garbage": "token_malformed",
    }.get(attack, "token_invalid")
    assert response.get_json()["error"]["code"] == expected


def test_refresh_and_logout(client, services):
    tokens = login(client, *make_account("operator"))
    refreshed = client.post("/api/v1/auth/refresh", headers=bearer(tokens["refresh_token"]))
    assert refreshed.status_code == 200
    access = refreshed.get_json()["access_token"]
    assert client.get("/api/v1/auth/me", headers=bearer(access)).status_code == 200
    assert client.post("/api/v1/auth/logout", headers=bearer(access)).status_code == 204
    revoked = client.get("/api/v1/auth/me", headers=bearer(access))
    assert revoked.status_code == 401
    assert "revoked" in revoked.get_json()["error"]["message"]


def test_user_role_cannot_enroll_or_recognize(client, services):
    headers = bearer(login(client, *make_account("user"))["access_token"])
    for path in ("/api/v1/persons", "/api/v1/recognize"):
        response = client.post(path, headers=headers, data={}, content_type="multipart/form-data")
        assert response.status_code == 403
        assert response.get_json()["error"]["code"] == "forbidden"


def test_another_organisations_person_and_job_are_invisible(client, services, worker):
    from tests import images
    from tests.conftest import enroll

    owner_email, password = make_account("operator")
    owner = bearer(login(client, owner_email, password)["access_token"])
    colleague = bearer(login(client, *make_account("operator", colleague_of=owner_email))["access_token"])
    admin = bearer(login(client, *make_account("admin", colleague_of=owner_email))["access_token"])
    other = bearer(login(client, *make_account("operator"))["access_token"])
    other_admin = bearer(login(client, *make_account("admin"))["access_token"])
    enrolled = enroll(client, owner, images.tom_hanks(), "Private")
    for headers, expected in ((other, 404), (other_admin, 404), (admin, 200), (colleague, 200), (owner, 200)):
        assert client.get(f"/api/v1/persons/{enrolled['person_id']}", headers=headers).status_code == expected
        assert client.get(f"/api/v1/jobs/{enrolled['job_id']}", headers=headers).status_code == expected
    assert client.delete(f"/api/v1/persons/{enrolled['person_id']}", headers=other).status_code == 404
    assert client.get("/api/v1/persons", headers=other).get_json()["error"]["code"] == "gallery_not_found"


def test_login_burst_is_rate_limited(client, services):
    with override_settings(RATELIMIT_LOGIN="3/minute"):
        email, _ = make_account("user")
        statuses = [
            client.post("/api/v1/auth/login", json={"email": email, "password": "wrong password!"}).status_code
            for _ in range(3)
        ]
        assert statuses == [401, 401, 401]
        limited = client.post("/api/v1/auth/login", json={"email": email, "password": "wrong password!"})
        assert limited.status_code == 429
        assert limited.get_json()["error"]["code"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) > 0


def test_submissions_are_rate_limited(client, services):
    from tests import images
    from tests.conftest import upload

    headers = bearer(login(client, *make_account("operator"))["access_token"])
    with override_settings(RATELIMIT_SUBMIT="2/minute"):
        statuses = [
            client.post(
                "/api/v1/recognize",
                data={"image": upload(images.tom_hanks()), "gallery": "missing"},
                headers=headers,
                content_type="multipart/form-data",
            ).status_code
            for _ in range(3)
        ]
    assert statuses == [404, 404, 429]
