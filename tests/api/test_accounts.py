"""Accounts: signup, password changes, erasure (no embedding survives), consent and the audit log."""

from __future__ import annotations

import json
import logging
import threading
import uuid

import numpy as np
import pytest
import requests
from sqlalchemy import func, select

from domain.db import session_scope
from domain.jobs import now
from domain.models import Account, Face, Organisation, Person
from tests.conftest import bearer, gallery_of, login, make_account, override_settings


def _person_with_faces(owner_id: str, gallery_name: str, faces: int = 2, account_id: str | None = None) -> str:
    """A person with real-looking (random, normalised) embeddings, stored directly."""
    rng = np.random.default_rng()
    with session_scope() as session:
        gallery = gallery_of(session, uuid.UUID(owner_id), gallery_name)
        person = Person(
            gallery_id=gallery.id,
            name="P",
            consent_at=now(),
            account_id=uuid.UUID(account_id) if account_id else None,
        )
        session.add(person)
        session.flush()
        for _ in range(faces):
            vector = rng.normal(size=512).astype(np.float32)
            session.add(
                Face(
                    person_id=person.id,
                    gallery_id=gallery.id,
                    embedding=vector / np.linalg.norm(vector),
                    model="w600k_mbf",
                    det_score=0.9,
                    bbox=[0, 0, 10, 10],
                )
            )
        return str(person.id)


def _faces_of(db, person_id: str) -> int:
    db.rollback()
    return db.execute(select(func.count()).where(Face.person_id == uuid.UUID(person_id))).scalar_one()


def _me(client, headers) -> dict:
    return client.get("/api/v1/auth/me", headers=headers).get_json()


def test_signup_creates_the_admin_of_a_new_organisation_and_can_be_turned_off(client, services):
    created = client.post("/api/v1/auth/signup", json={"email": "New@Example.com", "password": "long enough pw"})
    assert created.status_code == 201
    assert created.get_json()["role"] == "admin"
    assert login(client, "new@example.com", "long enough pw")["access_token"]
    again = client.post("/api/v1/auth/signup", json={"email": "new@example.com", "password": "long enough pw"})
    assert again.status_code == 409
    weak = client.post("/api/v1/auth/signup", json={"email": "weak@example.com", "password": "short"})
    assert weak.status_code == 400 and weak.get_json()["error"]["code"] == "weak_password"
    with override_settings(SIGNUP_ENABLED="false"):
        off = client.post("/api/v1/auth/signup", json={"email": "off@example.com", "password": "long enough pw"})
        assert off.status_code == 403


def _at_once(url: str, bodies: list[dict], headers: dict | None = None) -> list[int]:
    """POST each body from its own thread, all released together (a barrier), to the real app
    over HTTP; every wait bounded."""
    start = threading.Barrier(len(bodies))
    statuses: list[int | None] = [None] * len(bodies)

    def post(index: int) -> None:
        start.wait(timeout=10)
        statuses[index] = requests.post(url, json=bodies[index], headers=headers, timeout=30).status_code

    threads = [threading.Thread(target=post, args=(index,)) for index in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return statuses


@pytest.mark.parametrize("route", ["/api/v1/auth/signup", "/api/v1/accounts"])
def test_concurrent_creations_of_one_email_answer_409_not_500(app, services, admin_headers, route):
    """Both requests pass the "email taken?" check before either inserts; the unique constraint
    then refuses the second, which must be the same 409 as a sequential duplicate, leaving no
    half-made organisation behind. Several rounds: the race is not lost every time."""
    from tests.live_server import LiveServer

    server = LiveServer(app)
    headers = admin_headers if route.endswith("/accounts") else None
    emails = [f"race-{uuid.uuid4().hex[:8]}@example.com" for _ in range(6)]
    try:
        with override_settings(RATELIMIT_SIGNUP="1000/hour"):
            rounds = [
                _at_once(server.url + route, [{"email": email, "password": "long enough pw"}] * 2, headers)
                for email in emails
            ]
    finally:
        server.close()
    assert all(sorted(statuses) == [201, 409] for statuses in rounds), rounds
    with session_scope() as session:
        accounts = session.execute(select(func.count()).where(Account.email.in_(emails))).scalar_one()
        organisations = session.execute(select(func.count()).where(Organisation.name.in_(emails))).scalar_one()
    assert accounts == len(emails)
    assert organisations == (len(emails) if route.endswith("/signup") else 0)


def test_password_change_revokes_older_tokens(client, services):
    email, password = make_account("operator")
    old = login(client, email, password)
    changed = client.post(
        "/api/v1/auth/password",
        json={"current_password": password, "new_password": "a brand new password"},
        headers=bearer(old["access_token"]),
    )
    assert changed.status_code == 200
    # Tokens from before the change are refused once a second has passed (JWT iat has 1 s resolution).
    with session_scope() as session:
        account = session.execute(select(Account).where(Account.email == email)).scalar_one()
        account.tokens_valid_after = account.tokens_valid_after.replace(year=account.tokens_valid_after.year + 1)
    assert client.get("/api/v1/auth/me", headers=bearer(old["access_token"])).status_code == 401
    assert client.post("/api/v1/auth/refresh", headers=bearer(old["refresh_token"])).status_code == 401
    wrong = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert wrong.status_code == 401


def test_password_change_needs_the_current_password(client, services):
    email, password = make_account("user")
    headers = bearer(login(client, email, password)["access_token"])
    response = client.post(
        "/api/v1/auth/password", json={"current_password": "wrong one!!", "new_password": "x" * 12}, headers=headers
    )
    assert response.status_code == 401


def test_erasing_an_account_deletes_every_embedding_it_owns(client, services, db):
    email, password = make_account("operator")
    headers = bearer(login(client, email, password)["access_token"])
    me = _me(client, headers)
    in_gallery = _person_with_faces(me["id"], "staff")
    # Its own face profile, enrolled by somebody else's operator, goes too.
    enroller = _me(client, bearer(login(client, *make_account("operator"))["access_token"]))
    profile = _person_with_faces(enroller["id"], "badges", account_id=me["id"])
    assert _faces_of(db, in_gallery) == 2 and _faces_of(db, profile) == 2

    assert client.delete("/api/v1/auth/me", headers=headers, json={"password": password}).status_code == 204
    assert _faces_of(db, in_gallery) == 0
    assert _faces_of(db, profile) == 0
    assert db.get(Person, uuid.UUID(in_gallery)) is None
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 401
    assert client.post("/api/v1/auth/login", json={"email": email, "password": password}).status_code == 401


def test_admin_deletes_an_account_of_its_organisation_whose_galleries_stay(client, services, db):
    admin_email, password = make_account("admin")
    admin = bearer(login(client, admin_email, password)["access_token"])
    operator = _me(client, bearer(login(client, *make_account("operator", colleague_of=admin_email))["access_token"]))
    stranger = _me(client, bearer(login(client, *make_account("operator"))["access_token"]))
    person = _person_with_faces(operator["id"], "default")
    profile = _person_with_faces(operator["id"], "badges", account_id=operator["id"])
    assert client.delete(f"/api/v1/accounts/{stranger['id']}", headers=admin).status_code == 404  # another org
    assert client.delete(f"/api/v1/accounts/{operator['id']}", headers=admin).status_code == 204
    assert _faces_of(db, person) == 2  # the organisation's gallery outlives the operator who made it
    assert _faces_of(db, profile) == 0  # the operator's own face profile goes with the account
    assert client.delete(f"/api/v1/accounts/{operator['id']}", headers=admin).status_code == 404


def test_deleting_a_gallery_deletes_its_persons_and_faces(client, services, db):
    headers = bearer(login(client, *make_account("operator"))["access_token"])
    me = _me(client, headers)
    doomed = _person_with_faces(me["id"], "temp")
    kept = _person_with_faces(me["id"], "keep")
    listed = client.get("/api/v1/galleries", headers=headers).get_json()["items"]
    assert {(g["name"], g["person_count"]) for g in listed} == {("temp", 1), ("keep", 1)}
    assert client.delete("/api/v1/galleries/temp", headers=headers).status_code == 204
    assert _faces_of(db, doomed) == 0
    assert _faces_of(db, kept) == 2


def test_galleries_are_listed_page_by_page(client, services):
    headers = bearer(login(client, *make_account("operator"))["access_token"])
    for name in ("a", "b", "c"):
        assert client.post("/api/v1/galleries", json={"name": name}, headers=headers).status_code == 201
    first = client.get("/api/v1/galleries?limit=2", headers=headers).get_json()
    second = client.get(f"/api/v1/galleries?limit=2&cursor={first['next_cursor']}", headers=headers).get_json()
    assert [g["name"] for g in first["items"] + second["items"]] == ["a", "b", "c"]
    assert second["next_cursor"] is None
    assert client.get("/api/v1/galleries?page=2", headers=headers).status_code == 400


def test_an_admin_deletes_any_person_of_its_organisation_only(client, services, db):
    admin_email, password = make_account("admin")
    admin = bearer(login(client, admin_email, password)["access_token"])
    operator = _me(client, bearer(login(client, *make_account("operator", colleague_of=admin_email))["access_token"]))
    stranger = _me(client, bearer(login(client, *make_account("operator"))["access_token"]))
    person = _person_with_faces(operator["id"], "default")
    elsewhere = _person_with_faces(stranger["id"], "default")
    assert client.delete(f"/api/v1/persons/{elsewhere}", headers=admin).status_code == 404
    assert client.delete(f"/api/v1/persons/{person}", headers=admin).status_code == 204
    assert _faces_of(db, person) == 0 and _faces_of(db, elsewhere) == 2


def test_a_user_sees_and_erases_only_its_own_face_profile(client, services, db):
    headers = bearer(login(client, *make_account("user"))["access_token"])
    me = _me(client, headers)
    enroller = _me(client, bearer(login(client, *make_account("operator"))["access_token"]))
    own = _person_with_faces(enroller["id"], "badges", account_id=me["id"])
    someone_else = _person_with_faces(enroller["id"], "badges")
    assert client.get(f"/api/v1/persons/{own}", headers=headers).get_json()["account_id"] == me["id"]
    assert client.get(f"/api/v1/persons/{someone_else}", headers=headers).status_code == 404
    assert client.delete(f"/api/v1/persons/{own}", headers=headers).status_code == 204
    assert _faces_of(db, own) == 0
    assert _faces_of(db, someone_else) == 2


def test_role_promotion_and_audit_log(client, services):
    admin_email, admin_password = make_account("admin")
    admin = bearer(login(client, admin_email, admin_password)["access_token"])
    email, password = make_account("user", colleague_of=admin_email)
    user = _me(client, bearer(login(client, email, password)["access_token"]))
    promoted = client.patch(f"/api/v1/accounts/{user['id']}", json={"role": "operator"}, headers=admin)
    assert promoted.get_json()["role"] == "operator"
    bad = client.patch(f"/api/v1/accounts/{user['id']}", json={"role": "root"}, headers=admin)
    assert bad.status_code == 400
    operator = bearer(login(client, email, password)["access_token"])
    person = _person_with_faces(user["id"], "default")
    assert client.delete(f"/api/v1/persons/{person}", headers=operator).status_code == 204

    events = client.get(f"/api/v1/audit?actor_id={user['id']}", headers=admin).get_json()["items"]
    assert [e["action"] for e in events] == ["person.delete"]
    assert events[0]["target_id"] == person
    changes = client.get(f"/api/v1/audit?action=account.role_change&target_id={user['id']}", headers=admin)
    assert changes.get_json()["items"][0]["details"] == {"old": "user", "new": "operator"}
    page = client.get("/api/v1/audit?limit=1", headers=admin).get_json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    older = client.get(f"/api/v1/audit?limit=1&cursor={page['next_cursor']}", headers=admin).get_json()
    assert older["items"][0]["at"] <= page["items"][0]["at"]
    assert client.get("/api/v1/audit?since=yesterday", headers=admin).status_code == 400


def test_secrets_and_tokens_never_reach_the_logs(client, services, caplog):
    email, password = make_account("operator")
    with caplog.at_level(logging.DEBUG):
        tokens = login(client, email, password)
        client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"]))
        client.post("/api/v1/auth/login", json={"email": email, "password": "wrong-" + password})
    text = "\n".join(json.dumps(record.__dict__, default=str) for record in caplog.records)
    assert "request" in text  # the access log did run
    for secret in (password, tokens["access_token"], tokens["refresh_token"]):
        assert secret not in text
