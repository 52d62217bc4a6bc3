"""What a signed-in user of the console sees when Redis (its sessions) or PostgreSQL (everything
else) cannot be reached: a page saying so, 503, not a traceback nor a sign-in page; and the console
works again as soon as they are back. Each is made unreachable for real: its URL points at a port
nobody listens on."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from domain import db as database
from tests.api.test_console_pages import console, operator  # noqa: F401
from tests.conftest import free_port, override_settings

UNREACHABLE = "The database or Redis is unreachable: try again in a moment."


@contextlib.contextmanager
def unreachable_database() -> Iterator[None]:
    """The process's engine is built once from DATABASE_URL: build it again for the closed port, and
    back again after."""
    database.dispose_engine()
    database.get_engine.cache_clear()
    database._session_factory.cache_clear()
    try:
        with override_settings(DATABASE_URL=f"postgresql://faceapi@127.0.0.1:{free_port()}/faceapi"):
            yield
    finally:
        database.dispose_engine()
        database.get_engine.cache_clear()
        database._session_factory.cache_clear()


def assert_unavailable_page(response) -> None:
    assert response.status_code == 503
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert UNREACHABLE in page and "service_unavailable" in page
    assert "Traceback" not in page


def test_redis_unreachable_answers_a_503_page_then_the_console_works_again(console):  # noqa: F811
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"):
        assert_unavailable_page(console.get("/console/"))
    assert console.get("/console/").status_code == 200  # the session survived


def test_the_database_unreachable_answers_a_503_page_then_the_console_works_again(console):  # noqa: F811
    with unreachable_database():
        assert_unavailable_page(console.get("/console/"))
    assert console.get("/console/").status_code == 200
