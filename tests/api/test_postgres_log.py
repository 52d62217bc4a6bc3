"""PostgreSQL's own log does not keep the values of a failed statement: a unique violation's DETAIL
("Key (external_id)=(...) already exists") and the statement itself stay out of it, so a value a
deletion erases from the tables is not left behind in the server's log (docs/SECURITY.md)."""

from __future__ import annotations

import time
import uuid

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from config import get_settings


def _server_log() -> str:
    """The embedded PostgreSQL's log (pgserver writes it into its data directory)."""
    return (get_settings().data_dir / "pg" / "log").read_text(errors="replace")


def test_a_unique_violation_leaves_no_value_in_the_server_log(db):
    marker = f"erased-{uuid.uuid4().hex}"
    logged_before = len(_server_log())
    db.execute(text("CREATE TEMPORARY TABLE people_like (external_id text UNIQUE)"))
    insert = text(f"INSERT INTO people_like VALUES ('{marker}')")  # a literal: the statement names it too
    db.execute(insert)
    try:
        db.execute(insert)
        raise AssertionError("the second insert should violate the unique constraint")
    except IntegrityError as error:
        assert marker in str(error.orig)  # the client is told which value clashed...
    db.rollback()
    deadline = time.monotonic() + 5
    while "duplicate key" not in _server_log()[logged_before:] and time.monotonic() < deadline:
        time.sleep(0.1)
    logged = _server_log()[logged_before:]
    assert "duplicate key value violates unique constraint" in logged
    assert marker not in logged  # ...the server's log keeps neither the DETAIL nor the statement
