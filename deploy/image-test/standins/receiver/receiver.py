"""A webhook receiver for `make test-image`: checks each delivery's signature as docs/JOBS.md shows
(HMAC-SHA256 of timestamp + "." + body with WEBHOOK_SECRET) and keeps what it got;
GET /received lists it. Standard library only: it runs on the bare base image."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = os.environ["WEBHOOK_SECRET"].encode()
received: list[dict] = []
lock = threading.Lock()


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        timestamp = self.headers.get("X-FaceAPI-Timestamp", "")
        expected = "sha256=" + hmac.new(SECRET, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        signed = hmac.compare_digest(expected, self.headers.get("X-FaceAPI-Signature", ""))
        fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) < 300
        job = json.loads(body or b"{}")
        with lock:
            received.append(
                {
                    "delivery": self.headers.get("X-FaceAPI-Delivery"),
                    "event": self.headers.get("X-FaceAPI-Event"),
                    "job_id": job.get("id") or job.get("job_id"),
                    "status": job.get("status"),
                    "signed": signed,
                    "fresh": fresh,
                }
            )
        self.send_response(204 if signed and fresh else 401)
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        with lock:
            payload = json.dumps(received).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", 8080), Receiver).serve_forever()
