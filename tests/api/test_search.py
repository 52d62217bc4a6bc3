"""Finding persons and galleries by name: GET /persons?q= (any case, name or external_id), a "did you
mean" for a gallery name in another case, and what to do when no `default` gallery exists."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from domain.db import session_scope
from domain.jobs import now
from domain.models import Account, Person
from tests.conftest import bearer, gallery_of, login, make_account


def _names(client, headers, **query) -> list[str]:
    answer = client.get("/api/v1/persons", query_string=query, headers=headers)
    assert answer.status_code == 200, answer.get_json()
    return sorted(person["name"] for person in answer.get_json()["items"])


def _persons(owner_email: str, gallery: str, people: list[tuple[str, str | None]]) -> None:
    """Persons written straight to the database (no photo, no job: a worker running beside the
    tests would judge the photos, and only the names matter here)."""
    with session_scope() as session:
        owner = session.execute(select(Account).where(Account.email == owner_email)).scalar_one()
        row = gallery_of(session, owner.id, gallery)
        for name, external_id in people:
            consent = {"consent_at": now(), "consent_by_id": owner.id}
            session.add(Person(gallery_id=row.id, name=name, external_id=external_id, **consent))


def test_persons_are_found_by_part_of_their_name_or_external_id_in_any_case(client, operator_headers, operator_account):
    people = [("Ada Lovelace", "EMP-100"), ("Grace Hopper", "emp-200"), ("Ada_Byron", None), ("Alan Turing", "x%1")]
    _persons(operator_account[0], "team", people)

    assert _names(client, operator_headers, gallery="team", q="ada") == ["Ada Lovelace", "Ada_Byron"]
    assert _names(client, operator_headers, gallery="team", q="HOPPER") == ["Grace Hopper"]
    assert _names(client, operator_headers, gallery="team", q="Emp-") == ["Ada Lovelace", "Grace Hopper"]
    # LIKE's wildcards are plain characters in q.
    assert _names(client, operator_headers, gallery="team", q="a_b") == ["Ada_Byron"]
    assert _names(client, operator_headers, gallery="team", q="%") == ["Alan Turing"]
    assert _names(client, operator_headers, gallery="team", q="nobody") == []
    assert len(_names(client, operator_headers, gallery="team")) == 4


def test_an_empty_q_is_refused_with_the_field_named(client, operator_headers):
    answer = client.get("/api/v1/persons", query_string={"q": ""}, headers=operator_headers)
    assert answer.status_code == 400
    assert "q" in str(answer.get_json()["error"])


def test_a_gallery_name_in_another_case_gets_a_did_you_mean(client, operator_headers):
    assert client.post("/api/v1/galleries", json={"name": "Staff"}, headers=operator_headers).status_code == 201
    answer = client.get("/api/v1/persons", query_string={"gallery": "staff"}, headers=operator_headers)
    assert answer.status_code == 404
    error = answer.get_json()["error"]
    assert error["code"] == "gallery_not_found" and error["did_you_mean"] == "Staff"
    assert "'Staff'" in error["message"]
    typo = client.get("/api/v1/persons", query_string={"gallery": "STAF"}, headers=operator_headers).get_json()
    assert typo["error"]["did_you_mean"] == "Staff"
    unrelated = client.get("/api/v1/persons", query_string={"gallery": "visitors"}, headers=operator_headers)
    assert "did_you_mean" not in unrelated.get_json()["error"]


def test_no_default_gallery_says_to_pass_gallery_or_list_them(client, operator_headers):
    answer = client.get("/api/v1/persons", headers=operator_headers)
    assert answer.status_code == 404
    message = answer.get_json()["error"]["message"]
    assert "gallery" in message and "GET /api/v1/galleries" in message


def test_a_scoped_api_key_is_never_told_of_a_gallery_outside_its_scope(client):
    email, password = make_account("admin")
    admin = bearer(login(client, email, password)["access_token"])
    assert client.post("/api/v1/galleries", json={"name": "Secret"}, headers=admin).status_code == 201
    key = client.post("/api/v1/api-keys", json={"name": "k", "galleries": ["secret"]}, headers=admin).get_json()["key"]
    answer = client.get("/api/v1/persons", query_string={"gallery": "secret"}, headers=bearer(key))
    assert answer.status_code == 404
    assert "Secret" not in str(answer.get_json())


@pytest.mark.parametrize("q", ["x" * 201])
def test_a_q_too_long_is_refused(client, operator_headers, q):
    assert client.get("/api/v1/persons", query_string={"q": q}, headers=operator_headers).status_code == 400
