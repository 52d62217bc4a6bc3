"""Uploads that would cost far more to decode than they weigh are refused before decoding, with a
JSON error naming what to send instead; a progressive JPEG's job is charged for its scans."""

from __future__ import annotations

import time
import uuid

from PIL import Image
from sqlalchemy import func, select

from domain.models import Job, Person
from tests import images
from tests.conftest import enroll, upload
from tests.hostile_images import grey_scan_bomb, lossless_webp, scan_bomb


def _count(db, model) -> int:
    db.rollback()  # see rows committed by the request
    return db.execute(select(func.count()).select_from(model)).scalar_one()


def _enroll(client, headers, data: bytes):
    return client.post(
        "/api/v1/persons",
        data={"name": "X", "consent": "true", "image": upload(data, filename="upload.bin")},
        headers=headers,
        content_type="multipart/form-data",
    )


def test_a_scan_bomb_is_refused_at_once_and_leaves_nothing(client, operator_headers, db):
    """6000x6000 grey, 2,500 scans, a few hundred kB: 10 s of web CPU before."""
    bomb = grey_scan_bomb(2500)
    before = (_count(db, Job), _count(db, Person))
    started = time.monotonic()
    response = _enroll(client, operator_headers, bomb)
    assert time.monotonic() - started < 2
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "too_many_scans"
    assert "baseline JPEG" in error["message"]
    assert (_count(db, Job), _count(db, Person)) == before


def test_a_tiny_webp_of_forty_megapixels_is_refused(client, operator_headers, db):
    """1,586 bytes that grew the web process by 590 MB."""
    before = (_count(db, Job), _count(db, Person))
    response = _enroll(client, operator_headers, lossless_webp(16383, 2441))
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "image_too_large"
    assert "16383x2441" in error["message"] and "MB" in error["message"]
    assert (_count(db, Job), _count(db, Person)) == before


def test_a_progressive_jpeg_costs_its_scans(client, operator_headers, db):
    """24 Mpx with 30 scans is four passes over its pixels: 16 units, not the 4 of its pixels."""
    enroll(client, operator_headers, images.as_jpeg(images.tom_hanks()), "Someone")  # a gallery to search
    progressive = images.encode(Image.new("RGB", (6000, 4000), "grey"), progressive=True)  # 10 scans
    many_scans = scan_bomb(progressive, 20)
    response = client.post(
        "/api/v1/recognize",
        data={"image": upload(many_scans, filename="scans.jpg")},
        headers=operator_headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    db.rollback()
    job = db.get(Job, uuid.UUID(response.get_json()["job_id"]))
    assert job.cost == 16


def test_a_palette_png_of_thirty_megapixels_is_accepted_and_an_rgb_one_of_forty_refused(client, operator_headers):
    """Pillow holds a palette pixel in one byte and an RGB one in four."""
    palette = images.encode(Image.new("P", (6000, 5000), 3), "PNG")
    rgb = images.encode(Image.new("RGB", (8000, 5000), "grey"), "PNG")
    assert _enroll(client, operator_headers, rgb).get_json()["error"]["code"] == "image_too_large"
    response = _enroll(client, operator_headers, palette)
    assert response.status_code in (201, 202), response.get_data(as_text=True)
