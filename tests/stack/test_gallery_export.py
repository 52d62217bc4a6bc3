"""Gallery export and import through the API and a real worker: an archive made in one organisation
recognizes the same people in another, survives the source's deletion, is refused when altered, is
erased with a deleted person, and its download expires (docs/EXPORT.md)."""

from __future__ import annotations

import io
import uuid
import zipfile
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text, update

from domain.jobs import now
from domain.models import AuditEvent, Face, Gallery, GalleryExport, Person
from tests import images
from tests.conftest import bearer, login, make_account, recognize, upload, wait_for_job

pytestmark = pytest.mark.usefixtures("worker")

GROUP_MARGIN = 0.35


def group_faces(client, headers) -> list[tuple[int, int, int, int]]:
    """The boxes of the faces in the insightface group photo (a recognition in an empty gallery)."""
    probe = f"probe-{uuid.uuid4().hex[:6]}"
    assert client.post("/api/v1/galleries", json={"name": probe}, headers=headers).status_code == 201
    job = recognize(client, headers, images.group_photo(), gallery=probe)
    assert job["status"] == "succeeded", job
    boxes = []
    for face in job["result"]["faces"]:
        x1, y1, x2, y2 = face["bbox"]
        mx, my = (x2 - x1) * GROUP_MARGIN, (y2 - y1) * GROUP_MARGIN
        boxes.append((int(max(0, x1 - mx)), int(max(0, y1 - my)), int(x2 + mx), int(y2 + my)))
    return boxes


def enroll_people(client, headers, gallery: str) -> list[tuple[str, bytes]]:
    """Enroll everybody of the group photo and Tom Hanks; returns (name, a held-out photo of them)."""
    photos = {
        f"Person {i}": images.crop(images.group_photo(), box) for i, box in enumerate(group_faces(client, headers))
    }
    photos["Tom Hanks"] = images.tom_hanks()
    people = []
    for index, (name, photo) in enumerate(photos.items()):
        form = {
            "name": name,
            "consent": "true",
            "image": upload(photo),
            "gallery": gallery,
            "external_id": f"ext-{index}",
        }
        response = client.post("/api/v1/persons", data=form, headers=headers, content_type="multipart/form-data")
        assert response.status_code == 202, response.get_json()
        job = wait_for_job(client, headers, response.get_json()["job_id"])
        if job["status"] == "succeeded":
            person_id = job["result"]["person_id"]
            patched = client.patch(f"/api/v1/persons/{person_id}", json={"metadata": {"desk": index}}, headers=headers)
            assert patched.status_code == 200, patched.get_json()
            people.append((name, images.another_photo(photo, scale=1.5)))
    assert len(people) >= 5, "too few of the test photos enrolled"
    return people


def export(client, headers, gallery: str) -> tuple[dict, bytes]:
    response = client.post(f"/api/v1/galleries/{gallery}/export", headers=headers)
    assert response.status_code == 202, response.get_json()
    job = wait_for_job(client, headers, response.get_json()["job_id"])
    assert job["status"] == "succeeded", job
    download = client.get(job["result"]["download"], headers=headers)
    assert download.status_code == 200, download.get_json()
    assert download.mimetype == "application/zip"
    return job["result"], download.data


def import_archive(client, headers, gallery: str, archive: bytes, **fields):
    form = {"archive": (io.BytesIO(archive), "gallery.zip"), **fields}
    return client.post(
        f"/api/v1/galleries/{gallery}/import", data=form, headers=headers, content_type="multipart/form-data"
    )


def imported(client, headers, gallery: str, archive: bytes, **fields) -> dict:
    response = import_archive(client, headers, gallery, archive, **fields)
    assert response.status_code == 202, response.get_json()
    job = wait_for_job(client, headers, response.get_json()["job_id"])
    assert job["status"] == "succeeded", job
    return job["result"]


def best_name(client, headers, gallery: str, photo: bytes) -> str | None:
    job = recognize(client, headers, photo, gallery=gallery)
    assert job["status"] == "succeeded", job
    matches = job["result"]["faces"][0]["matches"] if job["result"]["faces"] else []
    return matches[0]["name"] if matches else None


@pytest.fixture()
def other_organisation(client) -> dict[str, str]:
    return bearer(login(client, *make_account("operator"))["access_token"])


def test_an_exported_gallery_recognizes_the_same_people_in_another_organisation(
    client, operator_headers, other_organisation, db
):
    people = enroll_people(client, operator_headers, "staff")
    result, archive = export(client, operator_headers, "staff")
    assert result["persons"] == len(people) and result["faces"] == len(people)

    with zipfile.ZipFile(io.BytesIO(archive)) as content:
        names = content.namelist()
    assert {"manifest.json", "embeddings.npy"} <= set(names)
    assert all(name in ("manifest.json", "embeddings.npy") or name.startswith("crops/") for name in names)
    # Another organisation cannot download it.
    assert client.get(result["download"], headers=other_organisation).status_code == 404

    first = imported(client, other_organisation, "imported", archive)
    assert first["gallery_created"] is True
    assert first["persons"]["created"] == len(people)
    assert first["faces"] == {"added": len(people), "reembedded": 0, "existing": 0, "failed": 0}
    for name, held_out in people:
        assert best_name(client, other_organisation, "imported", held_out) == name

    # Importing again adds nothing.
    again = imported(client, other_organisation, "imported", archive)
    assert again["persons"] == {"created": 0, "merged": 0, "skipped": len(people)}
    merged = imported(client, other_organisation, "imported", archive, on_conflict="merge")
    assert merged["persons"]["merged"] == len(people) and merged["faces"]["added"] == 0
    gallery_id = db.execute(
        select(Gallery.id)
        .join(Person, Person.gallery_id == Gallery.id)
        .where(Person.external_id == "ext-0")
        .where(Gallery.name == "imported")
    ).scalar_one()
    assert db.execute(select(func.count()).where(Face.gallery_id == gallery_id)).scalar_one() == len(people)

    # The source goes; the import stays whole.
    assert client.delete("/api/v1/galleries/staff", headers=operator_headers).status_code == 204
    for name, held_out in people:
        assert best_name(client, other_organisation, "imported", held_out) == name

    actions = set(db.execute(select(AuditEvent.action)).scalars())
    assert {"gallery.export", "gallery.export_download", "gallery.import"} <= actions


def test_an_archive_altered_by_one_byte_is_refused_and_leaves_nothing(client, operator_headers, other_organisation, db):
    enroll_people(client, operator_headers, "source")
    _, archive = export(client, operator_headers, "source")
    altered = bytearray(archive)
    altered[len(altered) // 2] ^= 0x20
    response = import_archive(client, other_organisation, "tampered", bytes(altered))
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_archive" and error["reason"] == "checksum_mismatch", error
    assert db.execute(select(func.count()).where(Gallery.name == "tampered")).scalar_one() == 0

    truncated = import_archive(client, other_organisation, "tampered", archive[: len(archive) // 2])
    assert truncated.status_code == 400 and truncated.get_json()["error"]["reason"] == "no_checksum"


def test_on_conflict_fail_refuses_the_whole_import(client, operator_headers):
    enroll_people(client, operator_headers, "twice")
    _, archive = export(client, operator_headers, "twice")
    response = import_archive(client, operator_headers, "twice", archive, on_conflict="fail")
    job = wait_for_job(client, operator_headers, response.get_json()["job_id"])
    assert job["status"] == "failed" and job["error"]["code"] == "person_conflict", job


def test_deleting_a_person_erases_the_pending_export(client, operator_headers, db):
    enroll_people(client, operator_headers, "erasure")
    result, archive = export(client, operator_headers, "erasure")
    person = db.execute(select(Person).where(Person.name == "Tom Hanks", Person.external_id.is_not(None))).scalars()
    person = next(p for p in person if p.gallery.name == "erasure")
    crop = db.execute(select(Face.crop).where(Face.person_id == person.id)).scalar_one()
    person_id, organisation_id = person.id, person.gallery.organisation_id
    assert crop and crop in archive  # the export holds the person's crop...

    assert client.delete(f"/api/v1/persons/{person_id}", headers=operator_headers).status_code == 204
    db.rollback()
    assert client.get(result["download"], headers=operator_headers).status_code == 404
    # ...and no archive anywhere holds a byte of it any more.
    # (Other tests' organisations enrolled the same photo: their archives hold the same crop.)
    holding = db.execute(
        text(
            "SELECT count(*) FROM gallery_exports"
            " WHERE organisation_id = :organisation AND position(CAST(:crop AS bytea) IN archive) > 0"
        ),
        {"crop": crop, "organisation": organisation_id},
    ).scalar_one()
    assert holding == 0
    assert db.execute(select(func.count()).where(GalleryExport.id == uuid.UUID(result["export_id"]))).scalar_one() == 0


def test_the_download_expires_and_is_purged(client, operator_headers, db):
    from workers.tasks import purge_jobs

    enroll_people(client, operator_headers, "expiring")
    result, _ = export(client, operator_headers, "expiring")
    export_id = uuid.UUID(result["export_id"])
    db.execute(
        update(GalleryExport).where(GalleryExport.id == export_id).values(expires_at=now() - timedelta(seconds=1))
    )
    db.commit()
    response = client.get(result["download"], headers=operator_headers)
    assert response.status_code == 410 and response.get_json()["error"]["code"] == "export_expired"
    purge_jobs()
    db.rollback()
    assert db.execute(select(func.count()).where(GalleryExport.id == export_id)).scalar_one() == 0


@pytest.mark.dataset
def test_real_photos_are_recognized_the_same_after_export_and_import(client, operator_headers, other_organisation):
    """LFW people (LFW_DIR, ../shared/datasets; skipped without it): each enrolled from one photo in one
    organisation, recognized in a held-out photo there and, after export and import, in another."""
    root = images.dataset_dir("LFW_DIR") / "images"
    people = [d for d in sorted(root.iterdir()) if d.is_dir() and len(list(d.glob("*.jpg"))) >= 2][:12]
    held_out = {}
    for person in people:
        first, second = sorted(person.glob("*.jpg"))[:2]
        form = {"name": person.name, "consent": "true", "image": upload(first.read_bytes()), "gallery": "lfw"}
        response = client.post(
            "/api/v1/persons", data=form, headers=operator_headers, content_type="multipart/form-data"
        )
        if wait_for_job(client, operator_headers, response.get_json()["job_id"])["status"] == "succeeded":
            held_out[person.name] = second.read_bytes()
    assert len(held_out) >= 8
    before = {name: best_name(client, operator_headers, "lfw", photo) for name, photo in held_out.items()}
    assert sum(before[name] == name for name in held_out) >= len(held_out) - 1

    _, archive = export(client, operator_headers, "lfw")
    imported(client, other_organisation, "lfw-copy", archive)
    after = {name: best_name(client, other_organisation, "lfw-copy", photo) for name, photo in held_out.items()}
    assert after == before


def test_a_deleted_person_is_erased_from_the_import_that_brought_it(client, operator_headers, other_organisation):
    people = enroll_people(client, operator_headers, "brought")
    _, archive = export(client, operator_headers, "brought")
    response = import_archive(client, other_organisation, "arrived", archive)
    job_id = response.get_json()["job_id"]
    result = wait_for_job(client, other_organisation, job_id)["result"]
    item = next(item for item in result["items"] if item["name"] == people[0][0])

    deleted = client.delete(f"/api/v1/persons/{item['person_id']}", headers=other_organisation)
    assert deleted.status_code == 204
    job = client.get(f"/api/v1/jobs/{job_id}", headers=other_organisation).get_json()
    assert people[0][0] not in str(job) and item["person_id"] not in str(job) and item["external_id"] not in str(job)
    assert len(job["result"]["items"]) == len(people)  # the entry stays, nameless
