"""The gallery archive format (domain/gallery_archive.py): what it holds, and every way a bad archive
is refused whole with a reason."""

from __future__ import annotations

import io
import json
import uuid
import zipfile

import numpy as np
import pytest

from domain import gallery_archive
from domain.errors import ServiceError

LIMIT = 10 * 1024 * 1024
METADATA_LIMIT = 4096  # PERSON_METADATA_MAX_BYTES by default


def small_archive(faces: int = 2, crop: bytes = b"\xff\xd8jpeg\xff\xd9") -> bytes:
    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal((faces, 512)).astype(np.float32)
    face_ids = [uuid.uuid4().hex for _ in range(faces)]
    manifest = {
        "exported_at": "2026-01-01T00:00:00+00:00",
        "gallery": {"name": "staff", "match_threshold": None, "model": "w600k_mbf"},
        "models": {"w600k_mbf": {}},
        "embeddings": {"file": "embeddings.npy", "dtype": "float32", "dim": 512},
        "persons": [
            {
                "name": "Ada",
                "external_id": "e-1",
                "metadata": {"desk": 4},
                "consent": {"at": "2026-01-01T00:00:00+00:00", "by": "op@example.com"},
                "faces": [
                    {
                        "id": face_id,
                        "photo_sha256": "a" * 64,
                        "model": "w600k_mbf",
                        "embedding": row,
                        "crop": f"crops/{face_id}.jpg",
                        "det_score": 0.9,
                        "bbox": [1.0, 2.0, 3.0, 4.0],
                        "quality": {"sharpness": 100.0},
                    }
                    for row, face_id in enumerate(face_ids)
                ],
            }
        ],
    }
    return gallery_archive.write(manifest, embeddings, {f"crops/{face_id}.jpg": crop for face_id in face_ids})


def refusal(data: bytes, limit: int = LIMIT) -> str:
    with pytest.raises(ServiceError) as refused:
        gallery_archive.read(data, max_bytes=limit, metadata_max_bytes=METADATA_LIMIT)
    assert refused.value.code == "invalid_archive" and refused.value.status == 400
    return refused.value.details["reason"]


def resealed(members: dict[str, bytes], manifest_change=None) -> bytes:
    """An archive rebuilt from `members` with a valid checksum (what a forger or a buggy tool makes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.comment = gallery_archive.CHECKSUM_PREFIX + b"0" * 64
        for name, data in members.items():
            if name == "manifest.json" and manifest_change:
                document = json.loads(data)
                manifest_change(document)
                data = json.dumps(document).encode()
            archive.writestr(name, data)
    return gallery_archive.seal(buffer.getvalue())


def members_of(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_an_archive_reads_back_what_was_written():
    data = small_archive()
    read = gallery_archive.read(data, max_bytes=LIMIT, metadata_max_bytes=METADATA_LIMIT)
    assert [p.name for p in read.manifest.persons] == ["Ada"]
    assert read.embeddings.shape == (2, 512) and read.embeddings.dtype == np.float32
    assert len(read.crops) == 2
    assert set(members_of(data)) == {"manifest.json", "embeddings.npy", *read.crops}


def test_every_single_byte_altered_is_refused():
    data = small_archive(faces=1)
    for position in range(len(data)):
        altered = bytearray(data)
        altered[position] ^= 0x01
        with pytest.raises(ServiceError, match="refused"):
            gallery_archive.read(bytes(altered), max_bytes=LIMIT, metadata_max_bytes=METADATA_LIMIT)


@pytest.mark.parametrize("cut", [1, 70, 200, 1000])
def test_a_truncated_archive_is_refused(cut):
    data = small_archive()
    assert refusal(data[:-cut]) in ("no_checksum", "checksum_mismatch")


def test_an_archive_over_the_limit_is_refused_before_it_is_read():
    data = small_archive()
    assert refusal(data, limit=len(data) - 1) == "too_large"


@pytest.mark.parametrize("name", ["../evil.jpg", "/etc/passwd", "crops/../../x.jpg", "crops/", "crops/a.png"])
def test_members_outside_the_format_are_refused_even_when_the_checksum_is_valid(name):
    members = {**members_of(small_archive()), name: b"x"}
    assert refusal(resealed(members)) == "unexpected_member"


def test_another_format_version_is_refused_with_the_supported_one():
    members = members_of(small_archive())
    with pytest.raises(ServiceError) as refused:
        gallery_archive.read(
            resealed(members, lambda m: m.update(version=2)), max_bytes=LIMIT, metadata_max_bytes=METADATA_LIMIT
        )
    assert refused.value.details["reason"] == "unsupported_version"
    assert refused.value.details["supported"] == [1]


def test_a_member_that_does_not_match_its_sum_is_refused():
    members = members_of(small_archive())
    crop = next(name for name in members if name.startswith("crops/"))
    members[crop] = b"\xff\xd8other\xff\xd9"
    assert refusal(resealed(members)) == "member_altered"


def test_a_member_larger_than_it_may_be_is_refused_without_expanding_it():
    members = members_of(small_archive())
    crop = next(name for name in members if name.startswith("crops/"))
    members[crop] = bytes(gallery_archive.MAX_CROP_BYTES + 1)
    assert refusal(resealed(members)) == "member_too_large"


def test_a_manifest_that_breaks_the_schema_names_the_field():
    members = members_of(small_archive())
    data = resealed(members, lambda m: m["persons"][0].update(name=""))
    with pytest.raises(ServiceError) as refused:
        gallery_archive.read(data, max_bytes=LIMIT, metadata_max_bytes=METADATA_LIMIT)
    assert refused.value.details["reason"] == "bad_manifest"
    assert refused.value.details["field"] == "persons.0.name"


def test_a_plain_zip_is_refused_as_not_an_archive_of_ours():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("photo.jpg", b"x")
    assert refusal(buffer.getvalue()) == "no_checksum"


def test_two_persons_with_one_external_id_are_refused():
    members = members_of(small_archive())

    def twin(manifest):
        manifest["persons"].append({**manifest["persons"][0], "faces": []})

    assert refusal(resealed(members, twin)) == "bad_manifest"
