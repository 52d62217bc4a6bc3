"""Request bodies a hostile client may send: JSON nested beyond Python's recursion limit, and
bodies whose transfer encoding breaks while they are read. Each is a 400 JSON answer, never a
500."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask.json.provider import DefaultJSONProvider

from domain.errors import ServiceError


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, except that a document nested too deeply to decode (`[` x 60000) is invalid
    JSON (a ValueError, so `get_json(silent=True)` answers None and validation says
    `invalid_json`) instead of a RecursionError."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("The JSON document is nested too deeply.") from None


def malformed_body() -> ServiceError:
    return ServiceError(
        "malformed_body", "The request body could not be read (broken chunked encoding or a cut connection).", 400
    )


def _read_errors() -> tuple[type[BaseException], ...]:
    """What a WSGI server's input stream raises for a body that breaks while it is read: gunicorn's
    parse errors (a bad chunk size, a missing chunk terminator) and NoMoreData, werkzeug's
    development server's OSError."""
    errors: list[type[BaseException]] = [OSError]
    try:
        from gunicorn.http.errors import ParseException
    except ImportError:  # pragma: no cover - gunicorn is in requirements.txt
        pass
    else:
        errors.append(ParseException)
    return tuple(errors)


class GuardedInput:
    """`wsgi.input`, with the server's read errors turned into a 400 `malformed_body`."""

    def __init__(self, stream: Any, errors: tuple[type[BaseException], ...]):
        self._stream = stream
        self._errors = errors

    def _call(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self._stream, name)(*args)
        except self._errors:
            raise malformed_body() from None

    def read(self, *args: Any) -> bytes:
        return self._call("read", *args)

    def readline(self, *args: Any) -> bytes:
        return self._call("readline", *args)

    def readlines(self, *args: Any) -> list[bytes]:
        return self._call("readlines", *args)

    def readinto(self, buffer: Any) -> int:
        try:
            return self._stream.readinto(buffer)
        except AttributeError:  # a stream without readinto (the WSGI spec does not require it)
            data = self.read(len(buffer))
            buffer[: len(data)] = data
            return len(data)
        except self._errors:
            raise malformed_body() from None

    def __iter__(self) -> Iterable[bytes]:
        while line := self.readline():
            yield line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_input(wsgi_app: Callable) -> Callable:
    """WSGI middleware: every request body is read through GuardedInput."""
    errors = _read_errors()

    def app(environ: dict, start_response: Callable) -> Any:
        if "wsgi.input" in environ:
            environ["wsgi.input"] = GuardedInput(environ["wsgi.input"], errors)
        return wsgi_app(environ, start_response)

    return app
