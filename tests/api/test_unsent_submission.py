"""A submission whose jobs were committed but could not be sent (the queue went down between the
commit and the send) answers 503 `queue_unavailable` and leaves nothing behind: no job, no batch,
no person it created, and no gallery it created (domain/enrollment.undo_unsent, the same rule a
failed enrollment's leftovers follow)."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select

from domain.models import Batch, Gallery, Job, Person
from tests import images
from tests.conftest import submit_batch, upload


@pytest.fixture
def queue_down(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise ConnectionError("the broker is unreachable")

    monkeypatch.setattr("web.services.submissions.enqueue", refuse)
    monkeypatch.setattr("web.services.batches.enqueue", refuse)


def _left_behind(db, gallery_name: str) -> dict[str, int]:
    db.rollback()
    gallery_ids = select(Gallery.id).where(Gallery.name == gallery_name)
    return {
        "galleries": db.execute(select(func.count()).where(Gallery.name == gallery_name)).scalar_one(),
        "persons": db.execute(select(func.count()).where(Person.gallery_id.in_(gallery_ids))).scalar_one(),
        "jobs": db.execute(select(func.count()).where(Job.gallery_id.in_(gallery_ids))).scalar_one(),
    }


def test_an_enrollment_into_a_new_gallery_leaves_nothing(client, operator_headers, db, queue_down):
    gallery = f"unsent-{uuid.uuid4().hex[:8]}"
    response = client.post(
        "/api/v1/persons",
        data={"name": "Unsent", "consent": "true", "gallery": gallery, "image": upload(images.tom_hanks())},
        headers=operator_headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == "queue_unavailable"
    assert _left_behind(db, gallery) == {"galleries": 0, "persons": 0, "jobs": 0}


def test_a_batch_into_a_new_gallery_leaves_nothing(client, operator_headers, db, queue_down):
    gallery = f"unsent-{uuid.uuid4().hex[:8]}"
    batches_before = db.execute(select(func.count()).select_from(Batch)).scalar_one()
    manifest = [{"file": "a.png", "name": "Ann"}, {"file": "b.png", "name": "Ann"}, {"file": "c.png", "name": "Bob"}]
    photos = [upload(images.distinct_copy(images.tom_hanks(), name), name) for name in ("a.png", "b.png", "c.png")]
    response = submit_batch(
        client, operator_headers, {"manifest": json.dumps(manifest), "images": photos, "gallery": gallery}
    )
    assert response.status_code == 503, response.get_data(as_text=True)
    assert _left_behind(db, gallery) == {"galleries": 0, "persons": 0, "jobs": 0}
    assert db.execute(select(func.count()).select_from(Batch)).scalar_one() == batches_before
