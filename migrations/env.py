"""Alembic environment: the database comes from config (DATABASE_URL), the models from domain.

Run by `python -m stack.cli migrate` (domain/schema.py) and by Flask-Migrate
(`flask --app web:create_app db upgrade`, `db migrate` to autogenerate a revision).
"""

from alembic import context

from domain.db import get_engine
from domain.gallery_indexes import PREFIX as GALLERY_INDEX_PREFIX
from domain.models import Base

target_metadata = Base.metadata


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Leave out of autogenerate the per-gallery HNSW indexes that domain.gallery_indexes makes and
    drops at run time (no migration owns them: a revision must not drop them)."""
    return not (type_ == "index" and reflected and (name or "").startswith(GALLERY_INDEX_PREFIX))


def run_migrations_online() -> None:
    with get_engine().connect() as connection:
        context.configure(
            connection=connection, target_metadata=target_metadata, compare_type=True, include_object=include_object
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("Offline migrations are not supported; run against a database.")
run_migrations_online()
