"""One organisation's long-polls leave room for the others: in a real gunicorn process, 40 waits of
one organisation take at most its share of the process's wait slots, and another organisation's
5 waits all wait (the red team saw them all refused once 40 waits took every slot)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.api.test_request_capacity import PASSWORD, Gunicorn, cancel, stuck_job
from tests.conftest import bearer, make_account

GREEDY_WAITS = 40
OTHER_WAITS = 5


@pytest.fixture(scope="module")
def web(services, tmp_path_factory) -> Iterator[Gunicorn]:
    server = Gunicorn(tmp_path_factory.mktemp("wait-share-web"))
    yield server
    server.close()


def _organisation(base: str) -> tuple[dict[str, str], uuid.UUID]:
    email, _ = make_account("operator")
    login = requests.post(f"{base}/api/v1/auth/login", json={"email": email, "password": PASSWORD}, timeout=30)
    assert login.status_code == 200, login.text
    return bearer(login.json()["access_token"]), stuck_job(email)


def test_one_organisations_waits_leave_room_for_another(web):
    from config import get_settings
    from web.waiting import ProcessWaits

    greedy, greedy_job = _organisation(web.base)
    other, other_job = _organisation(web.base)

    def long_poll(headers: dict, job_id: uuid.UUID) -> requests.Response:
        return requests.get(f"{web.base}/api/v1/jobs/{job_id}?wait=20", headers=headers, timeout=40)

    with ThreadPoolExecutor(GREEDY_WAITS + OTHER_WAITS) as pool:
        greedy_polls = [pool.submit(long_poll, greedy, greedy_job) for _ in range(GREEDY_WAITS)]
        time.sleep(2)  # every one of them reached the server
        started = time.monotonic()
        other_polls = [pool.submit(long_poll, other, other_job) for _ in range(OTHER_WAITS)]
        time.sleep(2)
        for job_id in (greedy_job, other_job):
            cancel(job_id)  # the waits still waiting wake up
        greedy_answers = [future.result() for future in greedy_polls]
        other_answers = [future.result() for future in other_polls]
        waited_seconds = time.monotonic() - started

    share = ProcessWaits(get_settings().wait_max_per_process).per_organisation
    assert share == get_settings().wait_max_per_process // 2
    assert sum("Retry-After" not in answer.headers for answer in greedy_answers) == share
    refused = [answer for answer in other_answers if "Retry-After" in answer.headers]
    assert refused == [], f"{len(refused)} of the other organisation's {OTHER_WAITS} waits were refused"
    assert all(answer.json()["status"] == "failed" for answer in other_answers)  # they waited for the end
    assert waited_seconds >= 2
