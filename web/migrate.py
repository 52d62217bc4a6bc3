"""Flask-Migrate on the app: `flask --app web:create_app db upgrade | migrate | current | history`.

Alembic stays the engine and migrations/ its only script directory (alembic.ini inside it, as
Flask-Migrate expects); migrations/env.py takes the database from DATABASE_URL and the models
from domain.models, so no Flask-SQLAlchemy object is involved. `python -m stack.cli migrate`
(the image's `migrate` command) applies the same revisions through domain/schema.py.
"""

from __future__ import annotations

from flask import Flask
from flask_migrate import Migrate

from domain.schema import MIGRATIONS_DIR


def init_app(app: Flask) -> None:
    Migrate(directory=str(MIGRATIONS_DIR)).init_app(app)
