"""The web tier's request threads cannot be exhausted.

A real gunicorn (stack/serve.py's command line, gunicorn.conf.py) with ONE worker process, so that
every connection lands on the same thread pool: long-polls beyond the caps answer at once, and
slow senders of headers leave threads for /healthz. The Redis wait counter is tested directly.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import requests

from tests.conftest import ROOT, bearer, free_port, make_account, stop_process, stored_job, wait_until_ready

LONG_POLLS = 24  # the measurement: 24 `?wait=30` from one account
SLOW_CONNECTIONS = 20  # the measurement: 20 connections sending headers 1 byte a second
PROBE_LIMIT_SECONDS = 1.0
PASSWORD = "correct horse battery"  # make_account's


class Gunicorn:
    """`python -m stack.serve web` on the session's PostgreSQL and Redis, one worker process."""

    def __init__(self, directory: Path):
        from stack.serve import command

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PORT": str(self.port), "WEB_WORKERS": "1", "DATA_DIR": str(directory)}
        self.log = (directory / "web.log").open("ab")
        self.process = subprocess.Popen(command("web"), cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until_ready(self.base, directory / "web.log", process=self.process)

    def close(self) -> None:
        stop_process(self.process)
        self.log.close()


@pytest.fixture(scope="module")
def gunicorn(services, tmp_path_factory) -> Iterator[Gunicorn]:
    server = Gunicorn(tmp_path_factory.mktemp("capacity-web"))
    yield server
    server.close()


def probe_seconds(base: str) -> float:
    """How long GET /healthz takes (at most 5 s: a probe that times out counts as 5 s)."""
    started = time.monotonic()
    with contextlib.suppress(requests.Timeout):
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
    return time.monotonic() - started


def stuck_job(email: str) -> uuid.UUID:
    """A queued job of the account that nothing runs (no message is sent for it)."""
    from sqlalchemy import select

    from domain.db import session_scope
    from domain.models import Account

    with session_scope() as session:
        owner = session.execute(select(Account.id).where(Account.email == email)).scalar_one()
        return stored_job(session, owner).id


def cancel(job_id: uuid.UUID) -> None:
    """End the job as DELETE /jobs/{id} does, without going through the (maybe busy) server."""
    from domain.db import session_scope
    from domain.errors import ServiceError
    from domain.jobs import finish
    from domain.models import JobStatus
    from domain.notifications import announce_job_ended

    with session_scope() as session:
        finish(session, job_id, error=ServiceError("cancelled", "The job was cancelled."), only_from=JobStatus.queued)
    announce_job_ended(job_id)


def test_long_polls_beyond_the_caps_answer_at_once_and_the_probe_stays_fast(gunicorn):
    from config import get_settings
    from web.waiting import ProcessWaits

    email, _ = make_account("operator")
    login = requests.post(f"{gunicorn.base}/api/v1/auth/login", json={"email": email, "password": PASSWORD}, timeout=30)
    assert login.status_code == 200, login.text
    headers = bearer(login.json()["access_token"])
    job_id = stuck_job(email)
    url = f"{gunicorn.base}/api/v1/jobs/{job_id}?wait=30"

    def long_poll(_: int) -> tuple[requests.Response, float]:
        started = time.monotonic()
        response = requests.get(url, headers=headers, timeout=45)
        return response, time.monotonic() - started

    with ThreadPoolExecutor(LONG_POLLS) as pool:
        polls = [pool.submit(long_poll, n) for n in range(LONG_POLLS)]
        time.sleep(2)  # every long-poll has reached the server
        probe = probe_seconds(gunicorn.base)
        held = transactions_held_open()
        cancel(job_id)  # the long-polls still waiting wake up
        answers = [future.result() for future in polls]

    print(f"GET /healthz behind {LONG_POLLS} long-polls: {probe:.3f} s")
    assert probe < PROBE_LIMIT_SECONDS
    assert held == 0, f"{held} waiting requests hold a transaction (and a pooled connection) open"
    at_once = [(r, s) for r, s in answers if r.headers.get("Retry-After") == "1"]
    waited = [(r, s) for r, s in answers if "Retry-After" not in r.headers]
    # One process, one organisation: its share of the process's waits is the tightest cap (the
    # organisation's own is across all processes).
    share = ProcessWaits(get_settings().wait_max_per_process).per_organisation
    assert len(waited) == min(share, get_settings().wait_max_per_organisation)
    assert len(at_once) == LONG_POLLS - len(waited)
    for response, seconds in at_once:
        assert response.status_code == 200 and response.json()["status"] == "queued" and seconds < 2
    for response, _ in waited:
        assert response.status_code == 200 and response.json()["status"] == "failed"


def transactions_held_open() -> int:
    """Connections that sit in a transaction after reading a job's row (what a wait that kept its
    connection between reads looks like), for half a second at least."""
    from sqlalchemy import text

    from domain.db import session_scope

    with session_scope() as session:
        return session.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' "
                "AND query LIKE 'SELECT jobs.%' AND state_change < now() - interval '0.5 seconds'"
            )
        ).scalar_one()


class CountingTransport(httpx.HTTPTransport):
    """httpx's own transport, counting the requests it sends."""

    requests = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return super().handle_request(request)


def test_the_sdk_pauses_as_told_when_its_wait_is_refused(gunicorn):
    """`FaceAPI.wait` long-polls in a loop: refused waits answer at once, so it must follow
    `Retry-After` instead of asking again straight away."""
    from faceapi_client import FaceAPI, errors

    from config import get_settings

    email, _ = make_account("operator")
    job_id = stuck_job(email)
    transport = CountingTransport()
    api = FaceAPI(gunicorn.base, email=email, password=PASSWORD, transport=transport)
    holders = FaceAPI(gunicorn.base, email=email, password=PASSWORD)
    with ThreadPoolExecutor(get_settings().wait_max_per_process) as pool:
        for _ in range(get_settings().wait_max_per_process):  # every wait slot of the process taken
            pool.submit(holders.get_job, str(job_id), wait=30)
        time.sleep(1.5)
        try:
            with pytest.raises(errors.WaitTimeout):
                api.wait(str(job_id), timeout=3)
        finally:
            cancel(job_id)
    print(f"FaceAPI.wait for 3 s with its waits refused: {transport.requests} requests")
    assert transport.requests <= 6  # a login, then about one poll a second


def test_slow_header_senders_leave_threads_for_the_probe(gunicorn):
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"x" * 60 + b"\r\n\r\n"
    stop = threading.Event()
    connections = [socket.create_connection(("127.0.0.1", gunicorn.port), timeout=5) for _ in range(SLOW_CONNECTIONS)]

    def drip() -> None:
        """One byte a second on every connection, for at most 15 s (never the whole request)."""
        for position in range(min(15, len(request) - 1)):
            for connection in connections:
                with contextlib.suppress(OSError):
                    connection.send(request[position : position + 1])
            if stop.wait(1):
                return

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        time.sleep(2.5)  # every connection has sent its first bytes and holds a thread
        probe = probe_seconds(gunicorn.base)
    finally:
        stop.set()
        dripper.join(5)
        for connection in connections:
            connection.close()
    print(f"GET /healthz beside {SLOW_CONNECTIONS} slow header senders: {probe:.3f} s")
    assert probe < PROBE_LIMIT_SECONDS


def test_the_organisation_cap_counts_waits_in_redis_and_forgets_expired_ones(services):
    from domain.notifications import redis_client
    from web.waiting import (
        MAX_WAIT_SECONDS,
        ORGANISATION_WAITS_KEY,
        SLOT_GRACE_SECONDS,
        release_organisation_slot,
        take_organisation_slot,
    )

    organisation, other = uuid.uuid4(), uuid.uuid4()
    held = [take_organisation_slot(organisation, limit=2, seconds=30) for _ in range(3)]
    assert held[0] and held[1] and held[2] is None, "the third wait is over the cap"
    assert take_organisation_slot(other, limit=2, seconds=30), "another organisation has its own count"
    release_organisation_slot(organisation, held[0])
    assert take_organisation_slot(organisation, limit=2, seconds=30), "a released slot is free again"
    # A killed process never releases its slots: they expire at their deadline.
    stale = uuid.uuid4()
    assert take_organisation_slot(stale, limit=1, seconds=0.2)
    assert take_organisation_slot(stale, limit=1, seconds=30) is None
    time.sleep(0.3)
    assert take_organisation_slot(stale, limit=1, seconds=30)
    assert 0 < redis_client().ttl(f"{ORGANISATION_WAITS_KEY}{stale}") <= MAX_WAIT_SECONDS + SLOT_GRACE_SECONDS
