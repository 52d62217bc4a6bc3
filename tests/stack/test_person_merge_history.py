"""What a merge does to the history: the finished jobs that named the merged-away person (a
recognition's matches, a batch's items) name the person it was merged into, as a user who fixed
a person enrolled twice expects; no job keeps an id that no longer exists."""

from __future__ import annotations

import pytest

from tests import images
from tests.conftest import enroll, recognize, submit_batch, upload, wait_batch, wait_for_job, zip_archive

pytestmark = pytest.mark.usefixtures("worker")
TOM = images.tom_hanks()
TOM_2 = images.another_photo(TOM, scale=2.0)


def _enrolled(client, headers, image: bytes, name: str, **fields) -> str:
    accepted = enroll(client, headers, image, name, **fields)
    assert wait_for_job(client, headers, accepted["job_id"])["status"] == "succeeded"
    return accepted["person_id"]


def test_results_naming_the_merged_person_name_the_person_it_was_merged_into(client, operator_headers):
    kept = _enrolled(client, operator_headers, TOM, "Tom Hanks", external_id="tom")
    patched = client.patch(f"/api/v1/persons/{kept}", json={"metadata": {"team": "a"}}, headers=operator_headers)
    assert patched.status_code == 200, patched.get_json()
    archive = zip_archive({"T. Hanks/1.png": TOM_2})
    response = submit_batch(client, operator_headers, {"archive": upload(archive, "people.zip")})
    assert response.status_code == 202, response.get_json()
    batch = wait_batch(client, operator_headers, response.get_json()["batch_id"])
    (item,) = batch["items"]
    twice = item["person_id"]
    assert [entry["person_id"] for entry in item["possible_duplicate_of"]] == [kept]
    assert twice and twice != kept
    seen = recognize(client, operator_headers, TOM_2)
    assert {match["person_id"] for match in seen["result"]["faces"][0]["matches"]} == {kept, twice}

    merged = client.post(f"/api/v1/persons/{twice}/merge", json={"into": kept}, headers=operator_headers)
    assert merged.status_code == 200, merged.get_json()

    result = client.get(f"/api/v1/jobs/{seen['id']}", headers=operator_headers).get_json()["result"]
    (match,) = result["faces"][0]["matches"]  # one person now, once, with the better similarity
    assert (match["person_id"], match["name"], match["external_id"]) == (kept, "Tom Hanks", "tom")
    assert match["metadata"] == {"team": "a"}
    best = max(m["similarity"] for m in seen["result"]["faces"][0]["matches"])
    assert match["similarity"] == best
    assert not result.get("redacted_matches")

    (item,) = wait_batch(client, operator_headers, batch["id"])["items"]
    assert item["person_id"] == kept and item["status"] == "succeeded"
    assert item["file"] == "T. Hanks/1.png"  # what was sent stays as it was sent
    assert item["possible_duplicate_of"] == []  # a face is no possible duplicate of its own person
    job = client.get(f"/api/v1/jobs/{item['job_id']}", headers=operator_headers).get_json()
    assert job["result"]["person_id"] == kept

    # Deleting the person merged into then erases what the merge handed it, as any deletion does.
    assert client.delete(f"/api/v1/persons/{kept}", headers=operator_headers).status_code in (200, 204)
    result = client.get(f"/api/v1/jobs/{seen['id']}", headers=operator_headers).get_json()["result"]
    assert result["faces"][0]["matches"] == [] and result["redacted_matches"] == 1
    (item,) = wait_batch(client, operator_headers, batch["id"])["items"]
    assert item["file"] is None and item["name"] is None
