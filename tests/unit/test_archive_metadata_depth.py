"""An imported gallery's persons follow the API's limit on metadata nesting (METADATA_MAX_DEPTH):
a deeper one refuses the archive with a reason naming the field, and a manifest nested beyond
what the JSON decoder can read is refused too, never a RecursionError."""

from __future__ import annotations

import json

import pytest

from domain.json_limits import METADATA_MAX_DEPTH
from tests.unit.test_gallery_archive import members_of, refusal, resealed, small_archive


def _nested(depth: int) -> dict:
    value: object = "deepest"
    for _ in range(depth - 1):
        value = {"next": value}
    return {"level": value}


def _with_metadata(metadata_json: str) -> bytes:
    members = members_of(small_archive())
    manifest = json.loads(members["manifest.json"])
    marker = "METADATA-PLACEHOLDER"
    manifest["persons"][0]["metadata"] = marker
    members["manifest.json"] = json.dumps(manifest).replace(f'"{marker}"', metadata_json).encode()
    return resealed(members)


@pytest.mark.parametrize("depth", [METADATA_MAX_DEPTH + 1, 200])
def test_metadata_nested_too_deeply_refuses_the_archive(depth):
    from domain import gallery_archive
    from domain.errors import ServiceError

    with pytest.raises(ServiceError) as refused:
        gallery_archive.read(
            _with_metadata(json.dumps(_nested(depth))), max_bytes=10 * 1024 * 1024, metadata_max_bytes=4096
        )
    assert refused.value.details["reason"] == "bad_manifest"
    assert "persons.0.metadata" in refused.value.message and f"{METADATA_MAX_DEPTH} levels" in refused.value.message


def test_a_manifest_too_deep_to_decode_is_refused():
    deep = '{"next": ' * 100_000 + "1" + "}" * 100_000
    assert refusal(_with_metadata(deep)) == "bad_manifest"


def test_metadata_at_the_limit_is_read():
    from domain import gallery_archive

    read = gallery_archive.read(
        _with_metadata(json.dumps(_nested(METADATA_MAX_DEPTH))), max_bytes=10 * 1024 * 1024, metadata_max_bytes=4096
    )
    assert read.manifest.persons[0].metadata == _nested(METADATA_MAX_DEPTH)
