"""Bad gallery archives are refused at upload, whole, with a reason, and leave nothing behind: no job,
no gallery, no person (docs/EXPORT.md lists the reasons)."""

from __future__ import annotations

import io
import zipfile

import pytest
from sqlalchemy import func, select

from domain.models import Gallery, Job
from tests.conftest import override_settings
from tests.unit.test_gallery_archive import members_of, resealed, small_archive


def post_import(client, headers, archive: bytes, gallery: str = "incoming", **fields):
    form = {"archive": (io.BytesIO(archive), "gallery.zip"), **fields}
    return client.post(
        f"/api/v1/galleries/{gallery}/import", data=form, headers=headers, content_type="multipart/form-data"
    )


def zip_slip() -> bytes:
    return resealed({**members_of(small_archive()), "../../etc/cron.d/x": b"x"})


def other_version() -> bytes:
    return resealed(members_of(small_archive()), lambda manifest: manifest.update(version=7))


def one_byte_altered() -> bytes:
    data = bytearray(small_archive())
    data[100] ^= 0x01
    return bytes(data)


def zip_bomb() -> bytes:
    members = members_of(small_archive())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.comment = b"faceapi-gallery sha256=" + b"0" * 64
        for name, data in members.items():
            if name.startswith("crops/"):
                data = bytes(50 * 1024 * 1024)  # 50 MB of zeros, about 50 kB deflated
            archive.writestr(name, data)
    from domain.gallery_archive import seal

    return seal(buffer.getvalue())


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (one_byte_altered, "checksum_mismatch"),
        (lambda: small_archive()[:-200], "no_checksum"),
        (zip_slip, "unexpected_member"),
        (other_version, "unsupported_version"),
        (zip_bomb, "member_too_large"),
        (lambda: b"not a zip at all" * 10, "no_checksum"),
    ],
)
def test_a_bad_archive_is_refused_with_its_reason_and_nothing_is_left(client, operator_headers, db, make, reason):
    jobs_before = db.execute(select(func.count()).select_from(Job)).scalar_one()
    response = post_import(client, operator_headers, make())
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert (error["code"], error["reason"]) == ("invalid_archive", reason), error
    assert db.execute(select(func.count()).select_from(Job)).scalar_one() == jobs_before
    assert db.execute(select(func.count()).where(Gallery.name == "incoming")).scalar_one() == 0


def test_an_oversized_archive_is_refused(client, operator_headers):
    archive = small_archive()
    with override_settings(GALLERY_ARCHIVE_MAX_BYTES=str(len(archive) - 1)):
        response = post_import(client, operator_headers, archive)
    assert response.status_code == 400 and response.get_json()["error"]["reason"] == "too_large"
    with override_settings(GALLERY_ARCHIVE_MAX_BYTES="1000"):
        body = post_import(client, operator_headers, bytes(200 * 1024))  # past the request's own limit
    assert body.status_code == 413


def test_on_conflict_takes_only_its_three_values(client, operator_headers):
    response = post_import(client, operator_headers, small_archive(), on_conflict="overwrite")
    assert response.status_code == 400 and "on_conflict" in response.get_json()["error"]["message"]
