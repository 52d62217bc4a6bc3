"""Requests gunicorn refuses itself, before Flask sees them (a malformed request line, too many or
too large headers, a URI too long), get the API's JSON error document, not gunicorn's HTML page."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.api.test_request_capacity import Gunicorn


@pytest.fixture(scope="module")
def gunicorn(services, tmp_path_factory) -> Iterator[Gunicorn]:
    server = Gunicorn(tmp_path_factory.mktemp("errors-web"))
    yield server
    server.close()


def raw_request(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; (status, headers, body) of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}, body


MALFORMED = {
    "request_line": (b"GARBAGE\r\n\r\n", 400, "malformed_request"),
    "header_name": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", 400, "malformed_request"),
    "too_many_headers": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(120)) + b"\r\n",
        431,
        "request_headers_too_large",
    ),
    "header_too_large": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
        431,
        "request_headers_too_large",
    ),
    "uri_too_long": (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_gunicorns_own_errors_are_json(gunicorn, case):
    request, status, code = MALFORMED[case]
    answered, headers, body = raw_request(gunicorn.port, request)
    assert answered == status, body
    assert headers["content-type"] == "application/json", body
    error = json.loads(body)["error"]
    assert error["code"] == code and error["message"]
    assert b"<html" not in body
