"""An API key acts within the smaller of its own role and scope and its creator's current role:
it never manages accounts, keys, the webhook secret or reads the audit log; its gallery scope holds
on every route and for every role; and what it cannot see it cannot probe either."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from domain.db import session_scope
from domain.jobs import now
from domain.models import EMBEDDING_DIM, Account, Batch, Face, Job, Person
from tests import images
from tests.conftest import bearer, gallery_of, login, make_account, override_settings, stored_job, upload

MULTIPART = "multipart/form-data"
PHOTO = images.another_photo(images.tom_hanks(), scale=2.0)


@dataclass
class Organisation:
    """An admin (signed in) with persons in galleries g1 and g2, a job in each, and a face profile."""

    admin: dict[str, str]
    admin_id: str
    admin_email: str
    persons: dict[str, str]  # gallery name -> person id
    jobs: dict[str, str]  # gallery name -> job id
    profile_person: str
    profile_face: str


def _account_id(client, headers: dict) -> str:
    return client.get("/api/v1/auth/me", headers=headers).get_json()["id"]


def _person(session, owner_id: uuid.UUID, gallery: str, **fields) -> Person:
    row = gallery_of(session, owner_id, gallery)
    person = Person(gallery_id=row.id, name=f"In {gallery}", consent_at=now(), consent_by_id=owner_id, **fields)
    session.add(person)
    session.flush()
    return person


@pytest.fixture()
def organisation(client) -> Organisation:
    email, password = make_account("admin")
    admin = bearer(login(client, email, password)["access_token"])
    admin_id = _account_id(client, admin)
    owner = uuid.UUID(admin_id)
    with session_scope() as session:
        persons = {name: str(_person(session, owner, name, external_id=f"ext-{name}").id) for name in ("g1", "g2")}
        jobs = {name: str(stored_job(session, owner, gallery=name).id) for name in ("g1", "g2")}
        profile = _person(session, owner, "profile", account_id=owner)
        face = Face(
            person_id=profile.id,
            gallery_id=profile.gallery_id,
            embedding=[0.0] * (EMBEDDING_DIM - 1) + [1.0],
            model="m",
            det_score=1.0,
            bbox=[0, 0, 1, 1],
        )
        session.add(face)
        session.flush()
        profile_person, profile_face = str(profile.id), str(face.id)
    return Organisation(admin, admin_id, email, persons, jobs, profile_person, profile_face)


def _key(client, admin: dict, **fields) -> dict[str, str]:
    response = client.post("/api/v1/api-keys", json={"name": "integration", **fields}, headers=admin)
    assert response.status_code == 201, response.get_json()
    return {"X-API-Key": response.get_json()["key"]}


def _code(response) -> str:
    return response.get_json()["error"]["code"]


def test_no_key_manages_accounts_keys_or_the_webhook_secret_nor_reads_the_audit_log(client, organisation):
    admin = organisation.admin
    colleague = make_account("user", colleague_of=organisation.admin_email)
    colleague_id = _account_id(client, bearer(login(client, *colleague)["access_token"]))
    new_account = {"email": f"new-{uuid.uuid4().hex[:6]}@example.com", "password": "a long password", "role": "admin"}
    for key in (_key(client, admin, role="admin", galleries=["g1"]), _key(client, admin, role="admin")):
        refused = [
            client.post("/api/v1/accounts", json=new_account, headers=key),
            client.get("/api/v1/accounts", headers=key),
            client.patch(f"/api/v1/accounts/{colleague_id}", json={"role": "admin"}, headers=key),
            client.delete(f"/api/v1/accounts/{colleague_id}", headers=key),
            client.get("/api/v1/audit", headers=key),
            client.post("/api/v1/api-keys", json={"name": "child", "role": "admin"}, headers=key),
            client.get("/api/v1/api-keys", headers=key),
            client.post("/api/v1/webhooks/secret/rotate", headers=key),
        ]
        for response in refused:
            assert response.status_code == 403, response.get_json()
            assert _code(response) == "password_login_required"
            assert "log in with a password" in response.get_json()["error"]["message"]
    accounts = client.get("/api/v1/accounts", headers=admin).get_json()["items"]
    assert {a["email"] for a in accounts} == {organisation.admin_email, colleague[0]}
    assert {a["role"] for a in accounts if a["email"] == colleague[0]} == {"user"}
    # The organisation-wide webhook secret signs every gallery's webhooks: not for a scoped key.
    for role in ("admin", "operator"):
        scoped = client.get("/api/v1/webhooks/secret", headers=_key(client, admin, role=role, galleries=["g1"]))
        assert scoped.status_code == 403 and _code(scoped) == "organisation_scope_required"
    whole = client.get("/api/v1/webhooks/secret", headers=_key(client, admin, role="operator"))
    assert whole.status_code == 200 and whole.get_json()["secret"]


def test_a_key_never_acts_above_its_creators_current_role(client, organisation):
    other_admin = bearer(login(client, *make_account("admin", colleague_of=organisation.admin_email))["access_token"])
    key = _key(client, organisation.admin, role="admin")
    assert client.get("/api/v1/persons?gallery=g1", headers=key).status_code == 200

    demote = client.patch(f"/api/v1/accounts/{organisation.admin_id}", json={"role": "user"}, headers=other_admin)
    assert demote.status_code == 200
    for path in ("/api/v1/persons?gallery=g1", "/api/v1/galleries", f"/api/v1/persons/{organisation.persons['g1']}"):
        assert client.get(path, headers=key).status_code in (403, 404), path
    assert client.get(f"/api/v1/jobs/{organisation.jobs['g2']}", headers=key).status_code == 200  # the user's own

    restored = client.patch(f"/api/v1/accounts/{organisation.admin_id}", json={"role": "operator"}, headers=other_admin)
    assert restored.status_code == 200
    assert client.get("/api/v1/persons?gallery=g1", headers=key).status_code == 200

    assert client.delete(f"/api/v1/accounts/{organisation.admin_id}", headers=other_admin).status_code == 204
    gone = client.get("/api/v1/persons?gallery=g1", headers=key)
    assert gone.status_code == 401 and _code(gone) == "api_key_invalid"


def test_a_user_key_keeps_to_its_gallery_scope(client, organisation):
    key = _key(client, organisation.admin, role="user", galleries=["g1"])
    listed = client.get("/api/v1/jobs?limit=100", headers=key).get_json()["items"]
    assert [job["id"] for job in listed] == [organisation.jobs["g1"]]
    assert client.get(f"/api/v1/jobs/{organisation.jobs['g1']}", headers=key).status_code == 200
    assert client.get(f"/api/v1/jobs/{organisation.jobs['g2']}", headers=key).status_code == 404
    # The creator's face profile is in the gallery "profile", outside the key's scope.
    profile = organisation.profile_person
    assert client.get(f"/api/v1/persons/{profile}", headers=key).status_code == 404
    assert client.get(f"/api/v1/persons/{profile}/faces", headers=key).status_code == 404
    added = client.post(
        f"/api/v1/persons/{profile}/faces",
        data={"image": upload(PHOTO), "force": "true"},
        headers=key,
        content_type=MULTIPART,
    )
    assert added.status_code == 404
    removed = client.delete(f"/api/v1/persons/{profile}/faces/{organisation.profile_face}", headers=key)
    assert removed.status_code == 404
    with session_scope() as session:
        assert session.get(Face, uuid.UUID(organisation.profile_face)) is not None
        assert session.query(Job).filter(Job.person_id == uuid.UUID(profile)).count() == 0


def test_a_scoped_key_lists_only_its_galleries_jobs_and_its_own_gallery_less_ones(client, organisation):
    key = _key(client, organisation.admin, role="operator", galleries=["g1"])
    key_id = client.get("/api/v1/api-keys", headers=organisation.admin).get_json()["items"][-1]["id"]
    owner = uuid.UUID(organisation.admin_id)
    with session_scope() as session:
        mine, theirs = stored_job(session, owner), stored_job(session, owner)
        for job in (mine, theirs):
            job.gallery_id = None  # a verification of two photos has no gallery
        mine.api_key_id = uuid.UUID(key_id)
        session.flush()
        mine_id, theirs_id = str(mine.id), str(theirs.id)
        batches = {}
        for name in ("g1", "g2"):
            gallery = gallery_of(session, owner, name)
            batch = Batch(
                organisation_id=gallery.organisation_id,
                owner_id=owner,
                gallery_id=gallery.id,
                gallery_name=name,
                total=0,
            )
            session.add(batch)
            session.flush()
            batches[name] = str(batch.id)
    listed = {job["id"] for job in client.get("/api/v1/jobs?limit=100", headers=key).get_json()["items"]}
    assert listed == {organisation.jobs["g1"], mine_id}
    assert client.get(f"/api/v1/jobs/{theirs_id}", headers=key).status_code == 404
    assert client.get(f"/api/v1/jobs/{mine_id}", headers=key).status_code == 200
    listed = [batch["id"] for batch in client.get("/api/v1/enrollments", headers=key).get_json()["items"]]
    assert listed == [batches["g1"]]
    assert client.get(f"/api/v1/enrollments/{batches['g2']}", headers=key).status_code == 404


def test_scope_is_checked_before_existence(client, organisation):
    key = _key(client, organisation.admin, role="operator", galleries=["g1"])
    answers = []
    for external_id in ("ext-g2", "nobody-has-this"):
        response = client.post(
            "/api/v1/persons",
            data={"name": "N", "consent": "true", "gallery": "g2", "external_id": external_id, "image": upload(PHOTO)},
            headers=key,
            content_type=MULTIPART,
        )
        answers.append((response.status_code, _code(response)))
        assert organisation.persons["g2"] not in response.get_data(as_text=True)
    assert answers == [(403, "gallery_out_of_scope")] * 2
    listed = client.get("/api/v1/persons?gallery=g2&external_id=ext-g2", headers=key)
    assert (listed.status_code, _code(listed)) == (403, "gallery_out_of_scope")


def test_only_operators_and_admins_may_force_a_face(client, organisation):
    user_email, password = make_account("user", colleague_of=organisation.admin_email)
    user = bearer(login(client, user_email, password)["access_token"])
    with session_scope() as session:
        account = session.query(Account).filter(Account.email == user_email).one()
        profile = str(_person(session, account.id, "profile-user", account_id=account.id).id)
    forced = client.post(
        f"/api/v1/persons/{profile}/faces",
        data={"image": upload(PHOTO), "force": "true"},
        headers=user,
        content_type=MULTIPART,
    )
    assert forced.status_code == 403, forced.get_json()
    assert "force" in forced.get_json()["error"]["message"]
    with session_scope() as session:
        assert session.query(Job).filter(Job.person_id == uuid.UUID(profile)).count() == 0


def test_an_organisation_holds_at_most_the_configured_number_of_keys(client, organisation):
    admin = organisation.admin
    with override_settings(API_KEYS_MAX_PER_ORGANISATION="2"):
        _key(client, admin, role="operator")
        _key(client, admin, role="user")
        refused = client.post("/api/v1/api-keys", json={"name": "third", "role": "user"}, headers=admin)
        assert refused.status_code == 409 and _code(refused) == "api_key_limit"
        assert "API_KEYS_MAX_PER_ORGANISATION=2" in refused.get_json()["error"]["message"]
        listed = client.get("/api/v1/api-keys", headers=admin).get_json()["items"]
        assert len(listed) == 2
        assert client.delete(f"/api/v1/api-keys/{listed[0]['id']}", headers=admin).status_code == 204
        _key(client, admin, role="user")
