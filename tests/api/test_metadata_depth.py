"""A person's metadata nests at most METADATA_MAX_DEPTH levels: deeper is a clear 400 naming the
field and the limit, never a 500 (RecursionError) nor a stored value that breaks later answers."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from domain.db import session_scope
from domain.jobs import now
from domain.json_limits import METADATA_MAX_DEPTH, nesting_depth
from domain.models import Account, Person
from tests.conftest import gallery_of


def _nested(depth: int, container: str = "object") -> dict:
    """A metadata object with `depth` levels of objects (or lists, inside the top object)."""
    value: object = "deepest"
    for _ in range(depth - 1):
        value = {"next": value} if container == "object" else [value]
    return {"level": value}


def _nested_json(depth: int, container: str) -> str:
    """The PATCH body with _nested's metadata, written out as text: json.dumps itself would
    recurse past Python's limit on the deepest ones."""
    opening, closing = ('{"next": ', "}") if container == "object" else ("[", "]")
    return '{"metadata": {"level": ' + opening * (depth - 1) + '"deepest"' + closing * (depth - 1) + "}}"


def _in_a_fresh_thread(request: Callable[[], Any]) -> Any:
    """Run the request as a server's worker does, with few frames below it: Python's recursion
    limit counts frames, and pytest's own would make the decoder give up first."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(request).result()


@pytest.fixture()
def person_id(client, operator_account, operator_headers) -> str:
    with session_scope() as session:
        owner = session.query(Account).filter(Account.email == operator_account[0]).one()
        gallery = gallery_of(session, owner.id, "staff")
        person = Person(gallery_id=gallery.id, name="P", consent_at=now(), consent_by_id=owner.id, meta={"kept": 1})
        session.add(person)
        session.flush()
        return str(person.id)


@pytest.mark.parametrize("container", ["object", "list"])
@pytest.mark.parametrize("depth", [METADATA_MAX_DEPTH + 1, 40, 935, 950])
def test_metadata_nested_too_deeply_is_refused_with_the_limit(client, operator_headers, person_id, depth, container):
    response = _in_a_fresh_thread(
        lambda: client.patch(
            f"/api/v1/persons/{person_id}",
            data=_nested_json(depth, container),
            content_type="application/json",
            headers=operator_headers,
        )
    )
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    error = response.get_json()["error"]
    assert error["code"] == "invalid_field"
    assert "metadata" in error["message"] and f"{METADATA_MAX_DEPTH} levels" in error["message"]
    with session_scope() as session:
        assert session.get(Person, uuid.UUID(person_id)).meta == {"kept": 1}


def test_metadata_at_the_limit_is_stored(client, operator_headers, person_id):
    metadata = _nested(METADATA_MAX_DEPTH)
    response = client.patch(f"/api/v1/persons/{person_id}", json={"metadata": metadata}, headers=operator_headers)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["metadata"] == metadata


def test_nesting_depth_counts_without_recursion():
    assert nesting_depth("text", 8) == 0
    assert nesting_depth({}, 8) == 1
    assert nesting_depth({"a": [1, {"b": []}]}, 8) == 4
    assert nesting_depth(_nested(100_000), 8) == 9  # stops counting once past the limit
