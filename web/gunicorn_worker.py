"""gunicorn's gthread worker, answering the errors gunicorn finds itself (a malformed request line,
a header too large or too many of them, a URI too long) with the API's JSON error document instead
of gunicorn's HTML page: such a request never reaches Flask, whose handlers write every other error
(web/errors.py).

gunicorn has no setting for its error page: it writes it with `gunicorn.util.write_error`, which
Worker.handle_error calls after choosing the status and logging. This worker class (the extension
point gunicorn documents for `worker_class`) replaces that writer in its own process when it starts.
"""

from __future__ import annotations

import json
import socket

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

# The error code of each status gunicorn answers by itself.
ERROR_CODES = {
    400: "malformed_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "request_headers_too_large",
    500: "internal_error",
    501: "not_implemented",
}
# What the client can do about it: gunicorn's own message names the part it could not read.
ADVICE = {
    414: "Send a shorter URL (at most 4094 bytes): long values belong in the body.",
    431: "Send fewer or smaller headers (at most 100 headers of 8190 bytes each).",
}


def json_error_response(status: int, reason: str, message: str) -> bytes:
    """The whole HTTP response gunicorn sends for an error: the API's {"error": {code, message}}."""
    detail = f"{reason}: {message}" if message else reason
    message = f"{detail}. {ADVICE.get(status, '')}".strip()
    body = json.dumps({"error": {"code": ERROR_CODES.get(status, "malformed_request"), "message": message}}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    util.write_nonblock(sock, json_error_response(status_int, reason, mesg))


class JsonErrorThreadWorker(ThreadWorker):
    def init_process(self) -> None:
        util.write_error = write_json_error  # this worker process's error pages, before it serves
        super().init_process()
