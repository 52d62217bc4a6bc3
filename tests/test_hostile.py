"""Hostile input and faults (issue 17): every answer is a 4xx or 503 JSON, never a 500, and
nothing a hostile client sends costs unbounded time or memory."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import jwt as pyjwt
from flask_jwt_extended import create_access_token

from config import get_settings
from domain.db import session_scope
from domain.jobs import now
from domain.models import Person
from tests.conftest import bearer, gallery_of, login, make_account, override_settings

PASSWORD = "correct horse battery"  # make_account's


def _me(client, headers) -> dict:
    return client.get("/api/v1/auth/me", headers=headers).get_json()


def _error(response) -> str:
    body = response.get_json()
    assert body is not None, response.get_data()[:500]
    return body["error"]["code"]


# --- accounts and tokens (item 13) ---------------------------------------------------------------


def test_login_failures_are_counted_per_email_and_client_address(client, services):
    email, password = make_account("user")
    attacker = {"REMOTE_ADDR": "198.51.100.7"}
    with override_settings(RATELIMIT_LOGIN="3/minute"):
        for _ in range(3):
            wrong = client.post(
                "/api/v1/auth/login", json={"email": email, "password": "wrong password!"}, environ_base=attacker
            )
            assert wrong.status_code == 401
        limited = client.post("/api/v1/auth/login", json={"email": email, "password": password}, environ_base=attacker)
        assert limited.status_code == 429
        # The owner, from its own address, is not locked out by somebody else's guesses.
        owner = client.post(
            "/api/v1/auth/login", json={"email": email, "password": password}, environ_base={"REMOTE_ADDR": "192.0.2.9"}
        )
        assert owner.status_code == 200, owner.get_json()


def test_logout_also_revokes_the_refresh_token_of_the_same_login(client, services):
    email, password = make_account("user")
    tokens = login(client, email, password)
    assert client.post("/api/v1/auth/logout", headers=bearer(tokens["access_token"])).status_code == 204
    refreshed = client.post("/api/v1/auth/refresh", headers=bearer(tokens["refresh_token"]))
    assert refreshed.status_code == 401 and _error(refreshed) == "token_revoked"
    # An access token from a refresh names the same login: its logout revokes that refresh token too.
    second = login(client, email, password)
    access = client.post("/api/v1/auth/refresh", headers=bearer(second["refresh_token"])).get_json()["access_token"]
    assert client.post("/api/v1/auth/logout", headers=bearer(access)).status_code == 204
    assert client.post("/api/v1/auth/refresh", headers=bearer(second["refresh_token"])).status_code == 401
    # Another login's tokens are untouched.
    third = login(client, email, password)
    assert client.get("/api/v1/auth/me", headers=bearer(third["access_token"])).status_code == 200


def test_erasing_oneself_takes_the_current_password(client, services):
    email, password = make_account("operator")
    headers = bearer(login(client, email, password)["access_token"])
    assert client.delete("/api/v1/auth/me", headers=headers).status_code == 400
    wrong = client.delete("/api/v1/auth/me", headers=headers, json={"password": "not the password"})
    assert wrong.status_code == 401 and _error(wrong) == "invalid_credentials"
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200
    assert client.delete("/api/v1/auth/me", headers=headers, json={"password": password}).status_code == 204
    assert client.post("/api/v1/auth/login", json={"email": email, "password": password}).status_code == 401


def test_tokens_without_expiry_or_id_are_refused(client, app, services):
    headers = bearer(login(client, *make_account("admin"))["access_token"])
    account_id = _me(client, headers)["id"]
    with app.app_context():
        forever = create_access_token(identity=account_id, expires_delta=False)
    issued = int(time.time())
    claims = {"sub": account_id, "type": "access", "fresh": False, "iat": issued, "nbf": issued, "exp": issued + 600}
    secret = get_settings().jwt_secret_key
    no_id = pyjwt.encode(claims, secret, algorithm="HS256")
    no_issued_at = pyjwt.encode({**claims, "jti": str(uuid.uuid4()), "iat": None}, secret, algorithm="HS256")
    for token in (forever, no_id, no_issued_at):
        response = client.get("/api/v1/auth/me", headers=bearer(token))
        assert response.status_code == 401, response.get_json()
        assert _error(response) == "token_invalid"
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200


def test_the_last_admin_cannot_demote_or_delete_itself(client, services):
    admin_email, _ = make_account("admin")
    admin = bearer(login(client, admin_email, PASSWORD)["access_token"])
    admin_id = _me(client, admin)["id"]
    make_account("operator", colleague_of=admin_email)
    demoted = client.patch(f"/api/v1/accounts/{admin_id}", headers=admin, json={"role": "operator"})
    assert demoted.status_code == 409 and _error(demoted) == "last_admin"
    assert client.delete(f"/api/v1/accounts/{admin_id}", headers=admin).status_code == 409
    erased = client.delete("/api/v1/auth/me", headers=admin, json={"password": PASSWORD})
    assert erased.status_code == 409 and _error(erased) == "last_admin"
    assert _me(client, admin)["role"] == "admin"
    # With a second admin, either may step down.
    make_account("admin", colleague_of=admin_email)
    assert client.patch(f"/api/v1/accounts/{admin_id}", headers=admin, json={"role": "operator"}).status_code == 200
    # The last account of all may still leave: its organisation goes with it.
    alone = bearer(login(client, *make_account("admin"))["access_token"])
    assert client.delete("/api/v1/auth/me", headers=alone, json={"password": PASSWORD}).status_code == 204


# --- a demoted operator (item 11) ------------------------------------------------------------------


def test_an_operator_demoted_to_user_loses_the_organisations_persons(client, services):
    from tests import images
    from tests.conftest import upload

    operator_email, _ = make_account("operator")
    operator = bearer(login(client, operator_email, PASSWORD)["access_token"])
    admin = bearer(login(client, *make_account("admin", colleague_of=operator_email))["access_token"])
    operator_id = _me(client, operator)["id"]
    with session_scope() as session:
        gallery = gallery_of(session, uuid.UUID(operator_id), "staff")
        person = Person(gallery_id=gallery.id, name="Kept", consent_at=now(), consent_by_id=uuid.UUID(operator_id))
        session.add(person)
        session.flush()
        person_id = str(person.id)
    assert client.get(f"/api/v1/persons/{person_id}", headers=operator).status_code == 200
    assert client.patch(f"/api/v1/accounts/{operator_id}", headers=admin, json={"role": "user"}).status_code == 200
    # The same token, now a user's: the organisation's persons are out of reach.
    assert client.get(f"/api/v1/persons/{person_id}", headers=operator).status_code == 404
    assert client.get(f"/api/v1/persons/{person_id}/faces", headers=operator).status_code == 404
    added = client.post(
        f"/api/v1/persons/{person_id}/faces",
        headers=operator,
        data={"image": upload(images.tom_hanks())},
        content_type="multipart/form-data",
    )
    assert added.status_code == 404
    assert client.delete(f"/api/v1/persons/{person_id}/faces/{uuid.uuid4()}", headers=operator).status_code == 404
    assert client.delete(f"/api/v1/persons/{person_id}", headers=operator).status_code == 404
    assert client.get(f"/api/v1/persons/{person_id}", headers=admin).status_code == 200


def test_expired_tokens_still_say_so(client, app, services):
    headers = bearer(login(client, *make_account("user"))["access_token"])
    with app.app_context():
        expired = create_access_token(identity=_me(client, headers)["id"], expires_delta=timedelta(seconds=-5))
    assert _error(client.get("/api/v1/auth/me", headers=bearer(expired))) == "token_expired"
