"""Migration 0018: the reaper's state of a job moves from its params into columns of its own; the
request's parameters stay in params, untouched."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import create_engine, text

from tests.api.test_flask_migrate import empty_database, flask_db  # noqa: F401 - the fixture

INSERTS = """
INSERT INTO organisations (id, name) VALUES (:organisation, 'o');
INSERT INTO accounts (id, organisation_id, email, password_hash, role)
    VALUES (:owner, :organisation, 'owner@example.com', 'x', 'operator');
INSERT INTO jobs (id, type, status, organisation_id, owner_id, params, created_at)
    VALUES (:given_up, 'recognize', 'queued', :organisation, :owner, :given_up_params, now()),
           (:overdue, 'recognize', 'running', :organisation, :owner, :overdue_params, now()),
           (:plain, 'recognize', 'queued', :organisation, :owner, :plain_params, now());
"""
REQUEST = {"threshold": 0.35, "top_k": 5, "max_faces": 20}


def test_the_reaper_state_moves_into_columns(empty_database):  # noqa: F811
    from domain.db import sqlalchemy_url

    upgraded = flask_db(empty_database, "upgrade", "0017")
    assert upgraded.returncode == 0, upgraded.stderr[-3000:]
    ids = {name: uuid.uuid4() for name in ("organisation", "owner", "given_up", "overdue", "plain")}
    params = {
        "given_up_params": json.dumps(
            {**REQUEST, "requeued_at": 1_700_000_000.5, "message_lost": True, "requeues_after_errors": 2}
        ),
        "overdue_params": json.dumps({**REQUEST, "requeued_after_timeout": True}),
        "plain_params": json.dumps(REQUEST),
    }
    engine = create_engine(sqlalchemy_url(empty_database))
    try:
        with engine.begin() as connection:
            for statement in filter(str.strip, INSERTS.split(";")):
                connection.execute(text(statement), {**ids, **params})
        upgraded = flask_db(empty_database, "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr[-3000:]
        with engine.begin() as connection:
            rows = {
                row.id: row
                for row in connection.execute(
                    text(
                        "SELECT id, params, extract(epoch FROM requeued_at) AS requeued_at, message_lost,"
                        " requeues_after_errors, requeued_after_timeout FROM jobs"
                    )
                )
            }
    finally:
        engine.dispose()
    assert all(row.params == REQUEST for row in rows.values())
    given_up, overdue, plain = rows[ids["given_up"]], rows[ids["overdue"]], rows[ids["plain"]]
    assert (float(given_up.requeued_at), given_up.message_lost, given_up.requeues_after_errors) == (
        1_700_000_000.5,
        True,
        2,
    )
    assert (overdue.requeued_after_timeout, overdue.message_lost, overdue.requeued_at) == (True, False, None)
    assert (plain.requeued_at, plain.message_lost, plain.requeues_after_errors, plain.requeued_after_timeout) == (
        None,
        False,
        0,
        False,
    )
