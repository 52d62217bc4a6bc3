"""Database engine and sessions shared by the web app, the workers and the tools."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from config import get_settings


class DatabaseNotConfigured(RuntimeError):
    pass


def sqlalchemy_url(url: str) -> str:
    """Use the psycopg 3 driver whatever scheme the URL was given with."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    # The process's one engine (a process edge, like its connection pool): the process's settings.
    settings = get_settings()
    if not settings.database_url:
        raise DatabaseNotConfigured(
            "DATABASE_URL is not set: start the service with `make run`, or export DATABASE_URL"
        )
    # pool_pre_ping: a restarted PostgreSQL costs one failed checkout, not a failed request.
    # hide_parameters: a failed statement's error (logged with its traceback) would otherwise carry
    # its bound values (emails, names, embeddings) into the logs.
    return create_engine(
        sqlalchemy_url(settings.database_url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        hide_parameters=True,
    )


def dispose_engine() -> None:
    """Forget pooled connections, e.g. in a freshly forked worker process."""
    if get_engine.cache_info().currsize:
        get_engine().dispose(close=False)


@lru_cache(maxsize=1)
def _session_factory() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


def new_session() -> Session:
    return _session_factory()()


@contextmanager
def session_scope() -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    session = new_session()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
