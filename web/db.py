"""One database session per request, closed when the request ends (as in Flask's tutorial)."""

from __future__ import annotations

from flask import Flask, g
from sqlalchemy.orm import Session

from domain.db import new_session


def get_session() -> Session:
    if "db_session" not in g:
        g.db_session = new_session()
    return g.db_session


def close_session(_exc: BaseException | None = None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_session)
