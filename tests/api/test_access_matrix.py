"""Every role against every endpoint, from one table: who may do what to whose objects."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from domain.db import session_scope
from domain.jobs import now
from domain.models import Account, Person
from tests import images
from tests.conftest import bearer, login, make_account, stored_job, upload

ROLES = ("admin", "owner", "colleague", "other", "user", "anonymous")
PASSWORD = "correct horse battery"  # every make_account's
PHOTO = images.another_photo(images.tom_hanks(), scale=2.0)


@dataclass
class World:
    """An organisation with an operator ("owner") whose gallery "g" holds a person and a job, an
    admin, another operator ("colleague") and a user; an operator of another organisation ("other")."""

    headers: dict[str, dict[str, str]]
    person_id: str
    job_id: str
    user_account_id: str


@pytest.fixture()
def world(client, services) -> World:
    tokens = {}
    ids = {}
    owner = make_account("operator")
    accounts = {
        "owner": owner,
        "admin": make_account("admin", colleague_of=owner[0]),
        "colleague": make_account("operator", colleague_of=owner[0]),
        "other": make_account("operator"),
        "user": make_account("user", colleague_of=owner[0]),
    }
    for role, (email, password) in accounts.items():
        tokens[role] = bearer(login(client, email, password)["access_token"])
        ids[role] = client.get("/api/v1/auth/me", headers=tokens[role]).get_json()["id"]
    tokens["anonymous"] = {}
    with session_scope() as session:
        job = stored_job(session, uuid.UUID(ids["owner"]), gallery="g")
        person = Person(gallery_id=job.gallery_id, name="P", consent_at=now(), consent_by_id=job.owner_id)
        session.add(person)
        session.flush()
        person_id, job_id = str(person.id), str(job.id)
    return World(tokens, person_id, job_id, ids["user"])


def _multipart(**fields):
    return {"data": fields, "content_type": "multipart/form-data"}


# method, path, request, expected status for: admin, owner, colleague, other organisation's operator, user, anonymous
MATRIX = [
    ("get", "/api/v1/auth/me", {}, (200, 200, 200, 200, 200, 401)),
    ("get", "/api/v1/persons?gallery=g", {}, (200, 200, 200, 404, 403, 401)),
    ("get", "/api/v1/persons/{person}/faces", {}, (200, 200, 200, 404, 404, 401)),
    ("patch", "/api/v1/persons/{person}", {"json": {"name": "Q"}}, (200, 200, 200, 404, 403, 401)),
    ("get", "/api/v1/persons/{person}", {}, (200, 200, 200, 404, 404, 401)),
    ("delete", "/api/v1/persons/{person}", {}, (204, 204, 204, 404, 404, 401)),
    ("post", "/api/v1/persons/{person}/faces", {"image": PHOTO}, (202, 202, 202, 404, 404, 401)),
    ("post", "/api/v1/persons", {"name": "N", "consent": "true", "image": PHOTO}, (202, 202, 202, 202, 403, 401)),
    ("post", "/api/v1/recognize", {"gallery": "g", "image": PHOTO}, (202, 202, 202, 404, 403, 401)),
    ("post", "/api/v1/detect", {"image": PHOTO}, (202, 202, 202, 202, 403, 401)),
    # A face no caller can see (the person of "g" has none): the same answer as another organisation's.
    ("post", "/api/v1/search", {"json": {"face_id": str(uuid.uuid4())}}, (404, 404, 404, 404, 403, 401)),
    ("get", "/api/v1/jobs/{job}", {}, (200, 200, 200, 404, 404, 401)),
    ("get", "/api/v1/galleries", {}, (200, 200, 200, 200, 403, 401)),
    ("get", "/api/v1/enrollments", {}, (200, 200, 200, 200, 403, 401)),
    ("post", "/api/v1/galleries", {"json": {"name": "new"}}, (201, 201, 201, 201, 403, 401)),
    ("delete", "/api/v1/galleries/g", {}, (204, 204, 204, 404, 403, 401)),
    # Recurring unknowns: "g" keeps none until a manager turns its pool on.
    ("get", "/api/v1/galleries/g/unknowns", {}, (409, 409, 409, 404, 403, 401)),
    ("delete", "/api/v1/galleries/g/unknowns/1", {}, (409, 409, 409, 404, 403, 401)),
    ("patch", "/api/v1/galleries/g", {"json": {"unknowns": {"enabled": True}}}, (200, 200, 200, 404, 403, 401)),
    ("get", "/api/v1/accounts", {}, (200, 403, 403, 403, 403, 401)),
    ("patch", "/api/v1/accounts/{user}", {"json": {"role": "operator"}}, (200, 403, 403, 403, 403, 401)),
    ("delete", "/api/v1/accounts/{user}", {}, (204, 403, 403, 403, 403, 401)),
    ("get", "/api/v1/audit", {}, (200, 403, 403, 403, 403, 401)),
    ("get", "/api/v1/api-keys", {}, (200, 403, 403, 403, 403, 401)),
    ("get", "/api/v1/webhooks/secret", {}, (200, 200, 200, 200, 403, 401)),
    ("post", "/api/v1/auth/me/face", {"consent": "true", "image": PHOTO}, (202, 202, 202, 202, 202, 401)),
    # Erasing oneself takes the password; the organisation's only admin may not leave its accounts behind.
    ("delete", "/api/v1/auth/me", {"json": {"password": PASSWORD}}, (409, 204, 204, 204, 204, 401)),
]


def _request_kwargs(spec: dict) -> dict:
    if "json" in spec:
        return {"json": spec["json"]}
    if spec:
        fields = {k: upload(v) if isinstance(v, bytes) else v for k, v in spec.items()}
        return _multipart(**fields)
    return {}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "spec", "expected"), MATRIX, ids=[f"{m} {p}" for m, p, *_ in MATRIX])
def test_access(client, world, role, method, path, spec, expected):
    url = path.format(person=world.person_id, job=world.job_id, user=world.user_account_id)
    response = getattr(client, method)(url, headers=world.headers[role], **_request_kwargs(spec))
    assert response.status_code == expected[ROLES.index(role)], response.get_data(as_text=True)
    if response.status_code >= 400:
        error = response.get_json()["error"]
        # Nothing but the code and message, and for a role refused, which role it has and needs.
        named_roles = {"role", "required_roles"} if error["code"] == "forbidden" else set()
        assert set(error) == {"code", "message"} | named_roles, error
    if role in ("other", "user") and response.status_code == 404:
        assert world.person_id not in response.get_data(as_text=True)


def test_role_names_in_the_table_match_the_model():
    assert {role.value for role in Account.role.type.enum_class} == {"admin", "operator", "user"}
