"""Bad uploads get a clear 4xx JSON error and leave nothing behind: no job, no person, no gallery."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from domain.models import Gallery, Job, Person
from tests import images
from tests.conftest import enroll, upload


def _count(db, model) -> int:
    db.rollback()  # see rows committed by the request
    return db.execute(select(func.count()).select_from(model)).scalar_one()


def _bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid PNG header claiming huge dimensions, with a tiny compressed body."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * width
    data = zlib.compress(row * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def _gif(frames: int = 1) -> bytes:
    first = Image.new("RGB", (64, 64), "red")
    more = [Image.new("RGB", (64, 64), "blue") for _ in range(frames - 1)]
    buffer = io.BytesIO()
    first.save(buffer, "GIF", save_all=frames > 1, append_images=more)
    return buffer.getvalue()


def _animated_webp() -> bytes:
    frames = [Image.new("RGB", (64, 64), color) for color in ("red", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


JPEG = images.another_photo(images.tom_hanks(), scale=2.0)

BAD_IMAGES = {
    "empty": (b"", 400, "empty_file"),
    "text": (b"hello, this is not an image at all", 415, "unsupported_media_type"),
    "svg": (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>', 415, "unsupported_media_type"),
    "gif": (_gif(), 415, "unsupported_media_type"),
    "bmp": (images.encode(Image.new("RGB", (64, 64)), "BMP"), 415, "unsupported_media_type"),
    "tiff": (images.encode(Image.new("RGB", (64, 64)), "TIFF"), 415, "unsupported_media_type"),
    "heic": (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64, 415, "unsupported_media_type"),
    "truncated_jpeg": (JPEG[: len(JPEG) // 2], 400, "invalid_image"),
    "corrupt_png": (images.tom_hanks()[:40] + b"\x00" * 200, 400, "invalid_image"),
    "jpeg_magic_garbage": (b"\xff\xd8\xff" + b"\x13" * 500, 400, "invalid_image"),
    "bomb": (_bomb_png(), 400, "image_too_large"),
    "tiny": (images.encode(Image.new("RGB", (16, 16)), "PNG"), 400, "image_too_small"),
    "animated_webp": (_animated_webp(), 400, "animated_image"),
}


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_bad_image_is_refused_and_nothing_is_stored(client, operator_headers, db, case):
    data, status, code = BAD_IMAGES[case]
    before = (_count(db, Job), _count(db, Person), _count(db, Gallery))
    response = client.post(
        "/api/v1/persons",
        data={"name": "X", "consent": "true", "image": upload(data, filename="upload.bin")},
        headers=operator_headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == code
    assert (_count(db, Job), _count(db, Person), _count(db, Gallery)) == before


def test_a_png_named_jpg_is_accepted_as_the_png_it_is(client, operator_headers, db):
    """Issue 12 item 7: curl, httpx and browsers declare the type from the file name, `requests`
    and ZIPs do not; the bytes are validated anyway, so every client gets the same answer."""
    enroll(client, operator_headers, JPEG, "Someone")  # a gallery to search
    before = _count(db, Job)
    response = client.post(
        "/api/v1/recognize",
        data={"image": upload(images.tom_hanks(), filename="x.jpg", content_type="image/jpeg")},
        headers=operator_headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    assert _count(db, Job) == before + 1


def test_upload_over_the_size_limit_is_413(client, operator_headers, db):
    before = _count(db, Job)
    big = JPEG + b"\x00" * (11 * 1024 * 1024)
    response = client.post(
        "/api/v1/recognize",
        data={"image": upload(big)},
        headers=operator_headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["code"] == "request_too_large"
    assert "10 MB per photo" in error["message"]  # the answer names the limit
    assert _count(db, Job) == before


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"consent": "true"}, "missing_field"),  # no name
        ({"name": "A"}, "consent_required"),  # no consent
        ({"name": "A", "consent": "false"}, "consent_required"),
        ({"name": "A", "consent": "true", "galery": "x"}, "unknown_field"),  # misspelled
        ({"name": "   ", "consent": "true"}, "missing_field"),
        ({"name": "A" * 201, "consent": "true"}, "invalid_field"),
        ({"name": "bad\x00name", "consent": "true"}, "invalid_field"),
        ({"name": "A", "consent": "true", "gallery": "../etc"}, "invalid_field"),
    ],
)
def test_enrollment_fields_are_checked(client, operator_headers, db, form, code):
    before = _count(db, Job)
    response = client.post(
        "/api/v1/persons",
        data={**form, "image": upload(JPEG)},
        headers=operator_headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == code
    assert _count(db, Job) == before


def test_missing_image_is_400(client, operator_headers):
    response = client.post(
        "/api/v1/persons",
        data={"name": "A", "consent": "true"},
        headers=operator_headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "missing_field"


@pytest.mark.parametrize(
    "field",
    [{"threshold": "2"}, {"threshold": "nan"}, {"threshold": "abc"}, {"top_k": "0"}, {"max_faces": "1000"}],
)
def test_recognize_parameters_are_bounded(client, operator_headers, field):
    response = client.post(
        "/api/v1/recognize",
        data={"image": upload(JPEG), **field},
        headers=operator_headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_field"


def test_unicode_and_sql_looking_names_are_stored_verbatim(client, operator_headers, db):
    name = "Zoë O'Brien'); DROP TABLE persons;-- 李"
    response = client.post(
        "/api/v1/persons",
        data={"name": name, "consent": "true", "image": upload(JPEG)},
        headers=operator_headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 202
    person = client.get(f"/api/v1/persons/{response.get_json()['person_id']}", headers=operator_headers)
    assert person.get_json()["name"] == name
    assert _count(db, Person) >= 1


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/api/v1/persons/not-a-uuid", 404),
        ("get", "/api/v1/jobs/123", 404),
        ("delete", "/api/v1/persons/%27%20OR%201%3D1", 404),
        ("get", "/api/v1/nothing-here", 404),
        ("put", "/api/v1/recognize", 405),
    ],
)
def test_errors_are_json_never_html(client, operator_headers, method, path, status):
    response = getattr(client, method)(path, headers=operator_headers)
    assert response.status_code == status
    assert response.is_json
    assert set(response.get_json()["error"]) == {"code", "message"}


def test_oversized_and_malformed_json_bodies(client):
    huge = client.post("/api/v1/auth/login", data="{" + " " * 70000 + "}", content_type="application/json")
    assert huge.status_code == 413
    assert huge.get_json()["error"]["code"] == "request_too_large"
    broken = client.post("/api/v1/auth/login", data="{not json", content_type="application/json")
    assert broken.status_code == 400
    assert broken.get_json()["error"]["code"] == "invalid_json"


def test_security_headers_and_closed_cors(client):
    response = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "Access-Control-Allow-Origin" not in response.headers
    assert response.headers["X-Request-ID"]


def test_a_multi_megabyte_photo_is_accepted(client, operator_headers):
    noise = np.random.default_rng(1).integers(0, 255, (1600, 1600, 3), dtype=np.uint8)
    data = images.encode(Image.fromarray(noise), quality=95)
    assert len(data) > 2 * 1024 * 1024
    response = client.post(
        "/api/v1/persons",
        data={"name": "Big photo", "consent": "true", "image": upload(data)},
        headers=operator_headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 202, response.get_json()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/v1/auth/login", {"json": {"email": "a\x00@example.com", "password": "x" * 12}}),
        ("get", "/api/v1/persons?gallery=a%00b", {}),
        ("get", "/api/v1/audit?action=x%00y", {}),
    ],
)
def test_nul_characters_are_a_client_error(client, admin_headers, method, path, body):
    response = getattr(client, method)(path, headers=admin_headers, **body)
    assert response.status_code in (400, 401), response.get_data(as_text=True)
    assert response.is_json
