"""Batch enrollment: manifests and ZIP archives, per-item errors, idempotency, the batch webhook."""

from __future__ import annotations

import json
import time

import pytest

from tests import images
from tests.conftest import submit_batch, upload, wait_batch, zip_archive
from tests.stack.test_webhooks import Receiver

pytestmark = pytest.mark.usefixtures("worker")
TOM = images.tom_hanks()
TOM_2 = images.another_photo(TOM, scale=2.0)


def test_manifest_batch_with_bad_items_and_idempotency(client, operator_headers):
    manifest = [
        {"file": "tom1.png", "name": "Tom Hanks", "external_id": "th"},
        {"file": "tom2.jpg", "name": "Tom Hanks", "external_id": "th"},
        {"file": "empty.jpg", "name": "Nobody"},
        {"file": "notes.txt", "name": "Text"},
        {"file": "missing.jpg", "name": "Ghost"},
    ]
    parts = [
        (TOM, "tom1.png"),
        (TOM_2, "tom2.jpg"),
        (images.no_face_photo(), "empty.jpg"),
        (b"just some text", "notes.txt"),
    ]
    files = [upload(*part) for part in parts]
    response = submit_batch(client, operator_headers, {"manifest": json.dumps(manifest), "images": files}, key="k-1")
    assert response.status_code == 202, response.get_json()
    batch_id = response.get_json()["batch_id"]
    assert response.get_json()["total"] == 5

    batch = wait_batch(client, operator_headers, batch_id)
    assert (batch["status"], batch["succeeded"], batch["failed"]) == ("partial", 2, 3)
    errors = {item["file"]: (item["error"] or {}).get("code") for item in batch["items"]}
    assert errors == {
        "tom1.png": None,
        "tom2.jpg": None,
        "empty.jpg": "no_face",
        "notes.txt": "unsupported_media_type",
        "missing.jpg": "missing_file",
    }
    tom_ids = {item["person_id"] for item in batch["items"] if item["file"].startswith("tom")}
    assert len(tom_ids) == 1  # one person, two faces
    person = client.get(f"/api/v1/persons/{tom_ids.pop()}", headers=operator_headers).get_json()
    assert person["face_count"] == 2 and person["external_id"] == "th"

    files = [upload(*part) for part in parts]  # the same request again (uploads are streams, read once)
    again = submit_batch(client, operator_headers, {"manifest": json.dumps(manifest), "images": files}, key="k-1")
    assert again.get_json()["batch_id"] == batch_id
    other = submit_batch(
        client, operator_headers, {"manifest": json.dumps(manifest), "images": [upload(TOM, "tom1.png")]}, key="k-1"
    )
    assert other.status_code == 409 and other.get_json()["error"]["code"] == "idempotency_key_reused"
    persons = client.get("/api/v1/persons", headers=operator_headers).get_json()["items"]
    assert sum(p["name"] == "Tom Hanks" for p in persons) == 1  # nothing new was created


def test_zip_archive_batch_refuses_traversal_bombs_and_non_images(client, operator_headers):
    archive = zip_archive(
        {
            "Tom Hanks/a.png": TOM,
            "Tom Hanks/b.jpg": TOM_2,
            "../escape.jpg": TOM,
            "deep/er/c.jpg": TOM,
            "Tom Hanks/readme.txt": b"hello",
            "Bomb/zeros.jpg": b"\xff\xd8\xff" + b"\x00" * (12 * 1024 * 1024),
        }
    )
    assert len(archive) < 100_000
    response = submit_batch(client, operator_headers, {"archive": upload(archive, "photos.zip")})
    assert response.status_code == 202, response.get_json()
    batch = wait_batch(client, operator_headers, response.get_json()["batch_id"])
    codes = {item["file"]: (item["error"] or {}).get("code") for item in batch["items"]}
    assert codes["Tom Hanks/a.png"] is None and codes["Tom Hanks/b.jpg"] is None
    assert codes["../escape.jpg"] == "invalid_path"
    assert codes["deep/er/c.jpg"] == "invalid_path"
    assert codes["Tom Hanks/readme.txt"] == "unsupported_media_type"
    assert codes["Bomb/zeros.jpg"] in ("file_too_large", "suspicious_compression")
    assert batch["status"] == "partial"


def test_bad_batch_requests(client, operator_headers):
    assert submit_batch(client, operator_headers, {}).status_code == 400
    broken = submit_batch(client, operator_headers, {"archive": upload(b"PK not really a zip", "x.zip")})
    assert broken.get_json()["error"]["code"] == "invalid_archive"
    manifest = submit_batch(client, operator_headers, {"manifest": "{not json", "images": [upload(TOM, "a.png")]})
    assert manifest.get_json()["error"]["code"] == "invalid_manifest"
    no_consent = client.post(
        "/api/v1/enrollments",
        data={"archive": upload(zip_archive({"A/a.png": TOM}), "a.zip")},
        headers=operator_headers,
        content_type="multipart/form-data",
    )
    assert no_consent.get_json()["error"]["code"] == "consent_required"


def test_batch_webhook_posts_the_batch_document(client, operator_headers):
    hook = Receiver([])
    try:
        manifest = [{"file": "a.png", "name": "Tom"}, {"file": "b.jpg", "name": "Tom"}]
        response = submit_batch(
            client,
            operator_headers,
            {
                "manifest": json.dumps(manifest),
                "images": [upload(TOM, "a.png"), upload(TOM_2, "b.jpg")],
                "webhook_url": hook.url,
            },
        )
        hook.wait_for(1)
        headers, body = hook.requests[0]
        document = json.loads(body)
        assert document["id"] == response.get_json()["batch_id"]
        assert headers["X-FaceAPI-Event"] == "batch.succeeded"
        assert document["succeeded"] == 2
        time.sleep(0.5)
        assert len(hook.requests) == 1  # exactly once
    finally:
        hook.close()


def test_a_batch_whose_every_entry_is_refused_still_posts_its_webhook(client, operator_headers):
    hook = Receiver([])
    try:
        manifest = [{"file": "a.txt", "name": "A"}]
        submit_batch(
            client,
            operator_headers,
            {"manifest": json.dumps(manifest), "images": [upload(b"not an image", "a.txt")], "webhook_url": hook.url},
        )
        hook.wait_for(1)
        assert hook.requests[0][0]["X-FaceAPI-Event"] == "batch.failed"
        assert json.loads(hook.requests[0][1])["failed"] == 1
    finally:
        hook.close()
