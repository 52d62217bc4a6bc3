"""Job idempotency, person listing and the engine's model checks."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from config import get_settings, load_settings
from domain.models import Face, Gallery, Job, JobStatus, Person
from tests import images
from tests.conftest import enroll, gallery_of, upload, wait_for_job


def test_a_redelivered_enrollment_never_adds_a_second_face(client, operator_headers, db, worker):
    from workers.context import WorkerContext
    from workers.pipeline import process_job

    enrolled = enroll(client, operator_headers, images.tom_hanks(), "Tom Hanks")
    first = wait_for_job(client, operator_headers, enrolled["job_id"])
    job_id = uuid.UUID(enrolled["job_id"])
    # The worker died after storing the face but before acknowledging: the job comes back.
    db.execute(update(Job).where(Job.id == job_id).values(status=JobStatus.running, input_image=images.tom_hanks()))
    db.commit()
    process_job(str(job_id), WorkerContext.of(get_settings()))

    db.expire_all()
    faces = db.execute(select(func.count()).where(Face.person_id == uuid.UUID(enrolled["person_id"]))).scalar_one()
    assert faces == 1
    again = wait_for_job(client, operator_headers, enrolled["job_id"])
    assert again["status"] == "succeeded"
    assert again["result"]["face_id"] == first["result"]["face_id"]


def test_a_finished_job_is_not_run_again(client, operator_headers, db, worker):
    from workers.context import WorkerContext
    from workers.pipeline import process_job

    enrolled = enroll(client, operator_headers, images.tom_hanks(), "Tom Hanks")
    finished = wait_for_job(client, operator_headers, enrolled["job_id"])
    process_job(enrolled["job_id"], WorkerContext.of(get_settings()))
    assert wait_for_job(client, operator_headers, enrolled["job_id"]) == finished


def _gallery_with_persons(db, owner_id: uuid.UUID, count: int) -> Gallery:
    gallery = gallery_of(db, owner_id, "default")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for index in range(count):
        db.add(
            Person(
                gallery_id=gallery.id,
                name=f"person {index:02d}",
                consent_at=start,
                created_at=start + timedelta(seconds=index // 2),  # ties on created_at are ordered by id
            )
        )
    db.commit()
    return gallery


def test_persons_are_listed_page_by_page_without_gaps(client, operator_headers, db):
    me = client.get("/api/v1/auth/me", headers=operator_headers).get_json()
    _gallery_with_persons(db, uuid.UUID(me["id"]), 25)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "/api/v1/persons?limit=10" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(query, headers=operator_headers).get_json()
        seen.extend(item["name"] for item in page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pages == 3
    assert sorted(seen) == [f"person {i:02d}" for i in range(25)]
    assert len(set(seen)) == 25


@pytest.mark.parametrize("query", ["limit=0", "limit=abc", "limit=500", "cursor=%%%"])
def test_bad_list_parameters(client, operator_headers, query):
    response = client.get(f"/api/v1/persons?{query}", headers=operator_headers)
    assert response.status_code == 400


def test_an_unknown_gallery_is_not_found_as_in_recognize(client, operator_headers):
    response = client.get("/api/v1/persons?gallery=none", headers=operator_headers)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "gallery_not_found"


def test_person_document_records_consent(client, operator_headers, worker):
    enrolled = enroll(client, operator_headers, images.tom_hanks(), "Tom Hanks", external_id="emp-7")
    wait_for_job(client, operator_headers, enrolled["job_id"])
    me = client.get("/api/v1/auth/me", headers=operator_headers).get_json()
    person = client.get(f"/api/v1/persons/{enrolled['person_id']}", headers=operator_headers).get_json()
    assert person["external_id"] == "emp-7"
    assert person["consent"]["given_by"] == me["id"]
    assert person["consent"]["given_at"]
    duplicate = client.post(
        "/api/v1/persons",
        data={"name": "Again", "consent": "true", "external_id": "emp-7", "image": upload(images.tom_hanks())},
        headers=operator_headers,
        content_type="multipart/form-data",
    )
    assert duplicate.status_code == 409
    assert duplicate.get_json()["error"]["code"] == "person_exists"


def test_model_files_are_verified(tmp_path):

    from workers.engine import BUNDLED_FILES, ModelError, bundled_pack_dir, resolve_pack

    settings = load_settings()
    pack = resolve_pack(settings)
    assert pack.model_name == "w600k_mbf"

    bad = tmp_path / "pack"
    bad.mkdir()
    for name in BUNDLED_FILES:
        (bad / name).symlink_to(bundled_pack_dir() / name)
    (bad / "SHA256SUMS").write_text("0" * 64 + "  w600k_mbf.onnx\n")
    with pytest.raises(ModelError, match="sha256"):
        resolve_pack(settings.model_copy(update={"model_pack_dir": bad}))
    (bad / "SHA256SUMS").write_text(f"{BUNDLED_FILES['w600k_mbf.onnx']}  w600k_mbf.onnx\n")
    assert resolve_pack(settings.model_copy(update={"model_pack_dir": bad})).recognizer.name == "w600k_mbf.onnx"
