"""A new user's first hour: each mistake with a token gets its own code and advice, `whoami` works
with an API key, and the addresses a person types first (`/`, `/api/v1`) point the way."""

from __future__ import annotations

import jwt
import pytest

from tests import images
from tests.conftest import bearer, login, make_account, override_settings, upload


@pytest.fixture()
def tokens(client) -> dict:
    email, password = make_account("admin")
    return login(client, email, password)


def _api_key(client, tokens: dict, **fields) -> str:
    answer = client.post(
        "/api/v1/api-keys", json={"name": "ci", "role": "operator", **fields}, headers=bearer(tokens["access_token"])
    )
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()["key"]


def _error(answer) -> dict:
    return answer.get_json()["error"]


def test_whoami_with_an_api_key_names_the_key_and_its_creator(client, tokens):
    key = _api_key(client, tokens, galleries=["staff"])
    for headers in (bearer(key), {"X-API-Key": key}):
        answer = client.get("/api/v1/auth/me", headers=headers)
        assert answer.status_code == 200, answer.get_json()
        me = answer.get_json()
        assert me["role"] == "admin" and me["api_key"]["name"] == "ci"
        assert me["api_key"]["role"] == "operator" and me["api_key"]["galleries"] == ["staff"]
        assert me["api_key"]["prefix"] in key
    assert "api_key" not in client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"])).get_json()


def test_a_refresh_token_sent_as_the_access_token_is_named_as_such(client, tokens):
    answer = client.get("/api/v1/auth/me", headers=bearer(tokens["refresh_token"]))
    assert answer.status_code == 401
    assert _error(answer)["code"] == "refresh_token_not_accepted"
    assert "/auth/refresh" in _error(answer)["message"] and "access_token" in _error(answer)["message"]
    answer = client.get("/api/v1/persons", headers=bearer(tokens["refresh_token"]))
    assert _error(answer)["code"] == "refresh_token_not_accepted"
    answer = client.post("/api/v1/auth/refresh", headers=bearer(tokens["access_token"]))
    assert _error(answer)["code"] == "access_token_not_accepted"


@pytest.mark.parametrize("bearer_value", ["eyJhbGciOiJIUzI1NiJ9", '"eyJ.abc.def"', "not-a-token", "a.b.c"])
def test_a_malformed_token_is_told_apart_from_an_invalid_one(client, bearer_value):
    answer = client.get("/api/v1/persons", headers=bearer(bearer_value))
    assert answer.status_code == 401
    assert _error(answer)["code"] == "token_malformed"
    assert "log in again" not in _error(answer)["message"]


def test_a_token_of_another_secret_is_invalid_and_advises_logging_in_again(client, tokens):
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    forged = jwt.encode(claims, "another secret of at least thirty-two characters", algorithm="HS256")
    answer = client.get("/api/v1/persons", headers=bearer(forged))
    assert answer.status_code == 401
    assert _error(answer)["code"] == "token_invalid" and "log in again" in _error(answer)["message"]


def test_an_api_key_where_a_password_login_is_needed_says_so(client, tokens):
    key = _api_key(client, tokens)
    for headers in (bearer(key), {"X-API-Key": key}):
        answer = client.post(
            "/api/v1/auth/password", json={"current_password": "x", "new_password": "y" * 12}, headers=headers
        )
        assert answer.status_code == 403
        assert _error(answer)["code"] == "password_login_required"
        assert "/auth/login" in _error(answer)["message"]


@pytest.mark.parametrize("path", ["/", "/api/v1", "/api/v1/"])
def test_the_first_addresses_point_the_way(client, path):
    answer = client.get(path)
    assert answer.status_code == 200
    links = answer.get_json()["links"]
    assert links["docs"] == "/api/v1/docs" and links["console"] == "/console/" and links["health"] == "/healthz"
    assert client.get(links["docs"]).status_code in (200, 301, 302, 308)


def test_make_runs_banner_names_the_docs_console_and_how_to_stop_it():
    from stack.run import banner

    with override_settings(FACEAPI_ENV="development", HOST="127.0.0.1", PORT="8123"):
        shown = banner(["postgresql", "redis"])
    assert "http://127.0.0.1:8123/api/v1/docs" in shown and "http://127.0.0.1:8123/console/" in shown
    assert "/healthz" in shown and "kill -INT" in shown


def test_a_data_dir_of_its_own_is_kept_out_of_git(tmp_path):
    from stack.run import keep_out_of_git

    keep_out_of_git(tmp_path / ".data-2")
    assert (tmp_path / ".data-2" / ".gitignore").read_text().splitlines()[-1] == "*"


def test_signup_makes_the_admin_of_a_new_organisation_who_can_enroll_at_once(client):
    credentials = {"email": "first-hour@example.com", "password": "a long enough password"}
    assert client.post("/api/v1/auth/signup", json=credentials).get_json()["role"] == "admin"
    headers = bearer(login(client, **credentials)["access_token"])
    form = {"name": "Tom Hanks", "consent": "true", "image": upload(images.tom_hanks())}
    answer = client.post("/api/v1/persons", data=form, headers=headers, content_type="multipart/form-data")
    assert answer.status_code == 202, answer.get_json()
    assert client.get("/api/v1/accounts", headers=headers).status_code == 200  # and add colleagues


def test_a_refused_role_names_the_role_it_has_and_the_one_needed(client):
    headers = bearer(login(client, *make_account("user"))["access_token"])
    answer = client.get("/api/v1/accounts", headers=headers)
    assert answer.status_code == 403
    error = _error(answer)
    assert error["role"] == "user" and error["required_roles"] == ["admin"]
    assert "'user'" in error["message"] and "needs admin" in error["message"]
