"""A console form that fails (a move or merge naming nobody, metadata that is not JSON, a deletion
not confirmed, an API key or account refused) answers a page that says what to fix AND links back
to the page of the form, so the user corrects it there. Before, the only link was "Galleries": the
person the user was fixing had to be found again."""

from __future__ import annotations

import re

import pytest

from tests.api.test_console_pages import add_persons, csrf_of, sign_in
from tests.conftest import make_account


@pytest.fixture()
def operator(services):
    return make_account("operator")


@pytest.fixture()
def console(app, operator):
    """A test client signed in to the console as a fresh operator."""
    client = app.test_client()
    assert sign_in(client, *operator).status_code == 302
    return client


def _back_link(page: str) -> str | None:
    found = re.search(r'<a href="([^"]+)"[^>]*>Back to the form</a>', page)
    return found.group(1) if found else None


def test_a_move_naming_nobody_links_back_to_the_person(console, db, operator):
    (person_id,) = add_persons(db, operator[0], "fixing", ["Ann"])
    token = csrf_of(console, f"/console/persons/{person_id}")
    response = console.post(
        f"/console/persons/{person_id}/faces/{person_id}/move", data={"target": "Nobody", "csrf_token": token}
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 404 and "Nobody" in page
    assert _back_link(page) == f"/console/persons/{person_id}"


def test_metadata_that_is_not_json_links_back_to_the_person(console, db, operator):
    (person_id,) = add_persons(db, operator[0], "fixing", ["Ann"])
    token = csrf_of(console, f"/console/persons/{person_id}")
    response = console.post(
        f"/console/persons/{person_id}/edit", data={"name": "Ann", "metadata": "{bad", "csrf_token": token}
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and "invalid_metadata" in page
    assert _back_link(page) == f"/console/persons/{person_id}"


def test_a_refused_account_links_back_to_the_accounts_page(app):
    admin = app.test_client()
    assert sign_in(admin, *make_account("admin")).status_code == 302
    token = csrf_of(admin, "/console/accounts")
    response = admin.post(
        "/console/accounts", data={"email": "not an email", "password": "x", "role": "user", "csrf_token": token}
    )
    assert response.status_code == 400
    assert _back_link(response.get_data(as_text=True)) == "/console/accounts"


def test_a_page_that_is_not_found_has_no_back_link(console):
    response = console.get("/console/galleries/nowhere")
    assert response.status_code == 404 and _back_link(response.get_data(as_text=True)) is None
