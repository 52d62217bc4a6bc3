"""The schema's version: Alembic migrations under migrations/ are the only way it changes."""

from __future__ import annotations

from functools import lru_cache

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from config import ROOT_DIR
from domain.db import get_engine

MIGRATIONS_DIR = ROOT_DIR / "migrations"  # Flask-Migrate's layout: alembic.ini inside it


def alembic_config() -> Config:
    return Config(str(MIGRATIONS_DIR / "alembic.ini"))


def upgrade() -> None:
    command.upgrade(alembic_config(), "head")


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def schema_is_current() -> bool:
    with get_engine().connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() == head_revision()
