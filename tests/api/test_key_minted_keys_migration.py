"""Migration 0014: keys may no longer mint keys, so the keys that a key minted before (they would
outlive the revocation of the key that made them) are revoked; a person's keys stay."""

from __future__ import annotations

import uuid

from sqlalchemy import create_engine, text

from tests.api.test_flask_migrate import empty_database, flask_db  # noqa: F401 - the fixture

INSERTS = """
INSERT INTO organisations (id, name) VALUES (:organisation, 'o');
INSERT INTO accounts (id, organisation_id, email, password_hash, role)
    VALUES (:admin, :organisation, 'admin@example.com', 'x', 'admin');
INSERT INTO api_keys (id, organisation_id, created_by_id, name, role, prefix, key_hash)
    VALUES (:parent, :organisation, :admin, 'by a person', 'admin', 'aaaaaaaa', 'hash-parent'),
           (:child, :organisation, :admin, 'by a key', 'admin', 'bbbbbbbb', 'hash-child');
INSERT INTO audit_events
    (id, actor_id, actor_email, organisation_id, api_key_id, action, target_type, target_id, details)
    VALUES (gen_random_uuid(), :admin, 'admin@example.com', :organisation, NULL, 'api_key.create', 'api_key',
            :parent_text, '{}'),
           (gen_random_uuid(), :admin, 'api-key:aaaaaaaa', :organisation, :parent, 'api_key.create', 'api_key',
            :child_text, '{}');
"""


def test_keys_minted_by_keys_are_revoked_and_a_persons_keys_stay(empty_database):  # noqa: F811
    from domain.db import sqlalchemy_url

    upgraded = flask_db(empty_database, "upgrade", "0013")
    assert upgraded.returncode == 0, upgraded.stderr[-3000:]
    ids = {name: uuid.uuid4() for name in ("organisation", "admin", "parent", "child")}
    engine = create_engine(sqlalchemy_url(empty_database))
    try:
        with engine.begin() as connection:
            parameters = {**ids, "parent_text": str(ids["parent"]), "child_text": str(ids["child"])}
            for statement in filter(str.strip, INSERTS.split(";")):
                connection.execute(text(statement), parameters)
        upgraded = flask_db(empty_database, "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr[-3000:]
        with engine.begin() as connection:
            left = connection.execute(text("SELECT name FROM api_keys ORDER BY name")).scalars().all()
    finally:
        engine.dispose()
    assert left == ["by a person"]
