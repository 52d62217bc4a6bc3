"""Per-organisation job budget, a job's cost by pixels, and fair queueing between organisations
: every submission route counts against one budget, checked in the transaction
that creates the jobs; a refusal is 429 `job_budget_exceeded` and leaves nothing behind; one
organisation's backlog does not hold up another's single job."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from PIL import Image
from sqlalchemy import delete, func, select, update

from tests.conftest import (
    bearer,
    login,
    make_account,
    override_settings,
    stored_job,
    submit_batch,
    upload,
    wait_for_job,
)
from tests.images import distinct_copy, encode, group_photo, tom_hanks

FACE = tom_hanks()  # 112x112: one cost unit


def solid_jpeg(width: int, height: int) -> bytes:
    """A photo of `width` x `height` pixels that compresses to little (a 36 MP one is ~0.6 MB)."""
    return encode(Image.new("RGB", (width, height), (120, 110, 100)), quality=50)


class Org:
    """An operator of an organisation of its own, with a gallery `staff` holding one person."""

    def __init__(self, client) -> None:
        from domain.db import session_scope
        from domain.jobs import now
        from domain.models import Account, Gallery, Person

        self.email, password = make_account("operator")
        self.headers = bearer(login(client, self.email, password)["access_token"])
        with session_scope() as session:
            account = session.execute(select(Account).where(Account.email == self.email)).scalar_one()
            self.owner_id, self.organisation_id = account.id, account.organisation_id
            gallery = Gallery(organisation_id=self.organisation_id, owner_id=self.owner_id, name="staff")
            session.add(gallery)
            session.flush()
            person = Person(gallery_id=gallery.id, name="Ada", consent_at=now(), consent_by_id=self.owner_id)
            session.add(person)
            session.flush()
            self.person_id = person.id

    def fill(self, cost: int) -> uuid.UUID:
        """A queued job of `cost` units written straight to the database: no message is sent, so no
        worker ever takes it, and it stays outstanding until `clear`."""
        from domain.db import session_scope

        with session_scope() as session:
            job = stored_job(session, self.owner_id, gallery="staff")
            job.cost = cost
            session.flush()
            return job.id

    def set_cost(self, job_id: uuid.UUID, cost: int) -> None:
        from domain.db import session_scope
        from domain.models import Job

        with session_scope() as session:
            session.execute(update(Job).where(Job.id == job_id).values(cost=cost))

    def counts(self) -> dict[str, object]:
        """What the organisation has: jobs, persons, galleries, batches, audit events."""
        from domain.db import session_scope
        from domain.models import AuditEvent, Batch, Gallery, Job, Person

        def count(column) -> int:
            return session.execute(select(func.count()).where(column == self.organisation_id)).scalar_one()

        with session_scope() as session:
            return {
                "jobs": count(Job.organisation_id),
                "batches": count(Batch.organisation_id),
                "audit": count(AuditEvent.organisation_id),
                "persons": session.execute(
                    select(func.count())
                    .select_from(Person)
                    .join(Gallery)
                    .where(Gallery.organisation_id == self.organisation_id)
                ).scalar_one(),
                "galleries": sorted(
                    session.execute(select(Gallery.name).where(Gallery.organisation_id == self.organisation_id))
                    .scalars()
                    .all()
                ),
            }

    def job_cost(self, job_id: str) -> int:
        from domain.db import session_scope
        from domain.models import Job

        with session_scope() as session:
            return session.execute(select(Job.cost).where(Job.id == uuid.UUID(job_id))).scalar_one()

    def clear(self) -> None:
        """Remove the organisation's outstanding jobs (the stored backlog never runs by itself)."""
        from domain.db import session_scope
        from domain.models import Job, JobStatus

        with session_scope() as session:
            session.execute(
                delete(Job).where(
                    Job.organisation_id == self.organisation_id, Job.status.in_([JobStatus.queued, JobStatus.running])
                )
            )


@pytest.fixture()
def org(client, services) -> Iterator[Org]:
    organisation = Org(client)
    yield organisation
    organisation.clear()


def post(client, headers: dict, path: str, form: dict):
    return client.post(path, data=form, headers=headers, content_type="multipart/form-data")


def assert_refused(response, *, limit: int, outstanding: int, requested: int) -> None:
    assert response.status_code == 429, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "job_budget_exceeded", error
    assert (error["limit"], error["outstanding"], error["requested"]) == (limit, outstanding, requested), error
    assert "ORG_MAX_PENDING_COST" in error["message"]
    # flask-limiter's headers raise Retry-After to its own window's reset on a limited route.
    assert int(response.headers["Retry-After"]) >= error["retry_after"] >= 1


def test_cost_grows_with_pixels_and_priority_falls_with_the_backlog():
    from domain.budget import image_cost, job_cost, queue_priority
    from domain.images import ImageInfo

    def photo(width: int, height: int) -> ImageInfo:  # what upload validation reads
        return ImageInfo(format="JPEG", content_type="image/jpeg", width=width, height=height)

    assert image_cost(photo(112, 112)) == 1
    assert image_cost(photo(250, 250)) == 1  # an LFW crop
    assert image_cost(photo(3000, 2000)) == 1  # 6 MP
    assert image_cost(photo(4032, 3024)) == 3  # a 12 MP phone photo
    assert image_cost(photo(7360, 4912)) == 7  # 36 MP
    assert job_cost(photo(112, 112), photo(112, 112)) == 2  # a two-photo verification
    priorities = [queue_priority(outstanding) for outstanding in range(600)]
    assert priorities[0] == 0 and priorities[1] == 1 and priorities[-1] == 9
    assert priorities == sorted(priorities)  # never higher for a larger backlog


def test_every_submission_route_counts_against_one_budget_and_a_refusal_leaves_nothing(client, org):
    headers = org.headers
    backlog = org.fill(5)
    before = org.counts()
    with override_settings(ORG_MAX_PENDING_COST="5"):
        refused = {
            "recognize": post(client, headers, "/api/v1/recognize", {"gallery": "staff", "image": upload(FACE)}),
            "verify": post(client, headers, "/api/v1/verify", {"image_a": upload(FACE), "image_b": upload(FACE)}),
            "enroll": post(
                client,
                headers,
                "/api/v1/persons",
                {"name": "Bo", "consent": "true", "gallery": "new-gallery", "image": upload(FACE)},
            ),
            "add_face": post(client, headers, f"/api/v1/persons/{org.person_id}/faces", {"image": upload(FACE)}),
            "profile": post(client, headers, "/api/v1/auth/me/face", {"consent": "true", "image": upload(FACE)}),
            "batch": submit_batch(
                client,
                headers,
                {
                    "gallery": "batch-gallery",
                    "manifest": json.dumps([{"file": "a.png", "name": "Cy"}]),
                    "images": [upload(FACE, "a.png")],
                },
            ),
        }
        for route, response in refused.items():
            requested = 2 if route == "verify" else 1
            assert_refused(response, limit=5, outstanding=5, requested=requested)
        # Nothing behind: no job, person, gallery, batch or audit event.
        assert org.counts() == before

        # One unit free: a two-photo verification (2) is refused, a recognition (1) fits.
        org.set_cost(backlog, 4)
        verify = post(client, headers, "/api/v1/verify", {"image_a": upload(FACE), "image_b": upload(FACE)})
        assert_refused(verify, limit=5, outstanding=4, requested=2)
        accepted = post(client, headers, "/api/v1/recognize", {"gallery": "staff", "image": upload(FACE)})
        assert accepted.status_code == 202, accepted.get_json()
        assert org.job_cost(accepted.get_json()["job_id"]) == 1


def test_a_job_costs_more_the_more_pixels_it_sends(client, org):
    large = solid_jpeg(7360, 4912)  # 36 MP: 7 units
    backlog = org.fill(4)
    with override_settings(ORG_MAX_PENDING_COST="10"):
        refused = post(client, org.headers, "/api/v1/recognize", {"gallery": "staff", "image": upload(large)})
        assert_refused(refused, limit=10, outstanding=4, requested=7)
        org.set_cost(backlog, 3)
        accepted = post(client, org.headers, "/api/v1/recognize", {"gallery": "staff", "image": upload(large)})
        assert accepted.status_code == 202, accepted.get_json()
        assert org.job_cost(accepted.get_json()["job_id"]) == 7


def test_a_batch_fits_whole_or_is_refused_whole(client, org):
    photos = [distinct_copy(FACE, f"batch-{i}") for i in range(3)]

    def batch(count: int):
        manifest = [{"file": f"{i}.jpg", "name": f"P{i}"} for i in range(count)]
        files = [upload(photos[i], f"{i}.jpg") for i in range(count)]
        return submit_batch(
            client, org.headers, {"gallery": "batch-gallery", "manifest": json.dumps(manifest), "images": files}
        )

    org.fill(3)
    before = org.counts()
    with override_settings(ORG_MAX_PENDING_COST="5"):
        assert_refused(batch(3), limit=5, outstanding=3, requested=3)
        assert org.counts() == before  # no batch, job, person, gallery or audit event
        accepted = batch(2)
        assert accepted.status_code == 202, accepted.get_json()
        assert accepted.get_json()["total"] == 2


@contextlib.contextmanager
def jobs_queue_paused() -> Iterator[None]:
    """The session's worker stops taking jobs (its consumer of the jobs' queue is cancelled), so
    what is accepted stays outstanding; it takes them again afterwards."""
    import jobqueue

    control = jobqueue.app().control
    control.cancel_consumer(jobqueue.QUEUE_NAME, reply=True, timeout=5, limit=1)  # one worker
    time.sleep(2)  # a BRPOP already sent (1 s timeout) may still name the queue
    try:
        yield
    finally:
        control.add_consumer(jobqueue.QUEUE_NAME, reply=True, timeout=5, limit=1)


def test_concurrent_submissions_of_one_organisation_never_exceed_the_budget(app, org, worker):
    """Twelve submissions at once with room for three: exactly three are accepted. Without the
    lock of the organisation's row, submissions that read the sum before the others commit all pass."""
    start = threading.Barrier(12)
    statuses: list[int] = []

    def submit(index: int) -> None:
        client = app.test_client()
        photo = upload(distinct_copy(FACE, f"race-{index}"))
        start.wait()
        response = post(client, org.headers, "/api/v1/recognize", {"gallery": "staff", "image": photo})
        statuses.append(response.status_code)

    with override_settings(ORG_MAX_PENDING_COST="3"), jobs_queue_paused():
        threads = [threading.Thread(target=submit, args=(i,)) for i in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(statuses) == [202] * 3 + [429] * 9, statuses
        org.clear()  # their messages find no job once the worker takes them again


def test_one_organisations_backlog_does_not_hold_up_anothers_job(client, worker):
    """Organisation A sends 40 recognitions of a group photo (0.3-1.5 s each on a busy 2-core
    machine's worker), then B sends one: B's ends after at most a few of A's that were still
    waiting, not after all of them (priorities by outstanding cost, domain/budget.py)."""
    from domain.db import session_scope
    from domain.models import Job, JobStatus

    photo = group_photo()
    a, b = Org(client), Org(client)
    a_jobs = []
    for _ in range(40):
        response = post(client, a.headers, "/api/v1/recognize", {"gallery": "staff", "image": upload(photo)})
        assert response.status_code == 202, response.get_json()
        a_jobs.append(uuid.UUID(response.get_json()["job_id"]))
    response = post(client, b.headers, "/api/v1/recognize", {"gallery": "staff", "image": upload(photo)})
    assert response.status_code == 202, response.get_json()
    b_job = uuid.UUID(response.get_json()["job_id"])
    with session_scope() as session:
        waiting = set(
            session.execute(
                select(Job.id).where(Job.id.in_(a_jobs), Job.status.in_([JobStatus.queued, JobStatus.running]))
            ).scalars()
        )
    assert len(waiting) >= 15, f"the worker kept up ({len(waiting)} of A's jobs left): no backlog to test"

    b_result = wait_for_job(client, b.headers, str(b_job))
    assert b_result["status"] == "succeeded", b_result
    with session_scope() as session:
        b_end = session.execute(select(Job.finished_at).where(Job.id == b_job)).scalar_one()
        ahead_of_b = session.execute(
            select(func.count()).where(Job.id.in_(waiting), Job.finished_at < b_end)
        ).scalar_one()
    for job_id in waiting:  # the rest of A's backlog is not needed: cancel what is still queued
        client.delete(f"/api/v1/jobs/{job_id}", headers=a.headers)
    print(f"A's jobs waiting when B submitted: {len(waiting)}; of them ended before B's: {ahead_of_b}")
    assert ahead_of_b <= 4, f"B's job ended after {ahead_of_b} of A's {len(waiting)} waiting jobs"
