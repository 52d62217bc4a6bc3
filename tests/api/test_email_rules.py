"""Email addresses that could pass for another one are refused at signup and account creation:
invisible or control characters (bidirectional overrides, zero-width spaces) and letters of two
scripts in one part (a Cyrillic 'а' among Latin ones). One script per part is a real address."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from domain.db import session_scope
from domain.models import Account
from tests.conftest import bearer, login, make_account, override_settings

PASSWORD = "a long enough password"


def _unique(template: str) -> str:
    return template.format(str(uuid.uuid4().int)[:8])  # digits: of no script, they mix with any


LOOK_ALIKES = [
    ("bidi override", "admin{}\u202emoc.elpmaxe@example.com", "invisible or control characters"),
    ("right-to-left isolate", "admin{}\u2067@example.com", "invisible or control characters"),
    ("zero-width space", "ad\u200bmin{}@example.com", "invisible or control characters"),
    ("Cyrillic a in a Latin local part", "\u0430dmin{}@example.com", "scripts"),
    ("Cyrillic a in a Latin domain", "admin{}@ex\u0430mple.com", "scripts"),
    ("Greek omicron in a Latin local part", "b\u03bfb{}@example.com", "scripts"),
]


def _accounts_named(email: str) -> int:
    with session_scope() as session:
        return session.execute(select(func.count()).where(Account.email == email.lower())).scalar_one()


@pytest.fixture()
def admin(client) -> dict[str, str]:
    return bearer(login(client, *make_account("admin"))["access_token"])


@pytest.mark.parametrize(("template", "explains"), [case[1:] for case in LOOK_ALIKES], ids=[c[0] for c in LOOK_ALIKES])
def test_look_alike_addresses_are_refused_everywhere(client, admin, template, explains):
    email = _unique(template)
    created = client.post("/api/v1/accounts", json={"email": email, "password": PASSWORD}, headers=admin)
    with override_settings(SIGNUP_ENABLED="true", RATELIMIT_SIGNUP="1000/hour"):
        signed_up = client.post("/api/v1/auth/signup", json={"email": email, "password": PASSWORD})
    for response in (created, signed_up):
        assert response.status_code == 400, response.get_json()
        assert response.get_json()["error"]["code"] == "invalid_email"
        assert explains in response.get_json()["error"]["message"]
    assert _accounts_named(email) == 0


@pytest.mark.parametrize(
    "template", ["josé{}@example.com", "иван{}@пример.рф", "ivan{}@пример.рф", "plain{}@example.com"]
)
def test_addresses_in_one_script_per_part_are_accepted(client, admin, template):
    email = _unique(template)
    created = client.post("/api/v1/accounts", json={"email": email, "password": PASSWORD}, headers=admin)
    assert created.status_code == 201, created.get_json()
    with override_settings(SIGNUP_ENABLED="true", RATELIMIT_SIGNUP="1000/hour"):
        other = _unique(template)
        signed_up = client.post("/api/v1/auth/signup", json={"email": other, "password": PASSWORD})
    assert signed_up.status_code == 201, signed_up.get_json()
