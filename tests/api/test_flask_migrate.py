"""Flask-Migrate drives the same Alembic revisions as `python -m stack.cli migrate`.

`flask --app web:create_app db upgrade` builds an empty database to the head revision, `db check`
finds nothing for `db migrate` to generate (the models and the revisions agree, and the per-gallery
indexes made at run time are not mistaken for something to drop), and domain/schema.py sees the
schema as current.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import ROOT


def flask_db(database_url: str, *arguments: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url, "FLASK_APP": "web:create_app"}
    return subprocess.run(
        [sys.executable, "-m", "flask", "db", *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture()
def empty_database(services):
    """A database of its own on the tests' embedded server, dropped afterwards."""
    from domain.db import get_engine, sqlalchemy_url

    name = f"flask_migrate_{uuid.uuid4().hex[:8]}"
    admin = create_engine(get_engine().url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = services.database_url.replace("/faceapi?", f"/{name}?", 1)
    assert url != services.database_url
    yield url
    engine = create_engine(sqlalchemy_url(url))
    engine.dispose()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_flask_db_upgrade_builds_the_schema_that_the_models_describe(empty_database):
    from domain.db import sqlalchemy_url
    from domain.schema import head_revision

    upgraded = flask_db(empty_database, "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr[-3000:]
    current = flask_db(empty_database, "current")
    assert current.returncode == 0, current.stderr[-3000:]
    assert f"{head_revision()} (head)" in current.stdout

    engine = create_engine(sqlalchemy_url(empty_database))
    try:
        with engine.begin() as connection:
            # A per-gallery index as domain.gallery_indexes makes it at run time: not the migrations' business.
            connection.execute(
                text("CREATE INDEX ix_faces_hnsw_g_test ON faces USING hnsw (embedding vector_cosine_ops)")
            )
    finally:
        engine.dispose()
    checked = flask_db(empty_database, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr[-3000:]
    assert "No new upgrade operations detected" in checked.stdout + checked.stderr
