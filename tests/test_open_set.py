"""Open-set identification through the API: a threshold that follows the gallery (issue 18).

The rule itself (domain/openset.py) has unit tests in test_openset.py; these run it on the real
stack: the recognition result says which threshold it used and why, the gallery's and the
request's thresholds override it, and a gallery of a few hundred real people keeps strangers
strangers at about the rate the benchmark measured (bench/results/openset.json).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from domain import openset
from tests import images
from tests.conftest import enroll, upload, wait_for_job

pytestmark = pytest.mark.usefixtures("worker")
MULTIPART = "multipart/form-data"
TOM = images.tom_hanks()


def _recognize(client, headers, image: bytes, **fields) -> dict:
    response = client.post(
        "/api/v1/recognize?wait=30",
        data={"image": upload(image), **fields},
        headers=headers,
        content_type=MULTIPART,
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()["result"]


def test_the_result_says_which_threshold_it_used_and_what_it_means(client, operator_headers):
    wait_for_job(client, operator_headers, enroll(client, operator_headers, TOM, "Tom Hanks")["job_id"])
    derived = _recognize(client, operator_headers, images.another_photo(TOM, scale=2.0))
    assert derived["threshold_source"] == "match_fpir"
    assert derived["gallery_faces"] == 1
    assert derived["threshold"] == 0.30  # a one-face gallery gets the floor, MATCH_THRESHOLD
    assert derived["expected_fpir"] == openset.expected_fpir(0.30, 1)
    assert derived["faces"][0]["matches"][0]["name"] == "Tom Hanks"

    requested = _recognize(client, operator_headers, TOM, threshold="0.9")
    assert (requested["threshold"], requested["threshold_source"]) == (0.9, "request")

    fixed = client.patch("/api/v1/galleries/default", json={"match_threshold": 0.5}, headers=operator_headers)
    assert fixed.status_code == 200 and fixed.get_json()["match_threshold"] == 0.5
    by_gallery = _recognize(client, operator_headers, TOM)
    assert (by_gallery["threshold"], by_gallery["threshold_source"]) == (0.5, "gallery")
    client.patch("/api/v1/galleries/default", json={"match_threshold": None}, headers=operator_headers)
    assert _recognize(client, operator_headers, TOM)["threshold_source"] == "match_fpir"


def test_verify_keeps_the_one_to_one_threshold(client, operator_headers):
    response = client.post(
        "/api/v1/verify?wait=30",
        data={"image_a": upload(TOM), "image_b": upload(images.another_photo(TOM))},
        headers=operator_headers,
        content_type=MULTIPART,
    )
    assert response.get_json()["result"]["threshold"] == 0.30


# --- a gallery of real people -------------------------------------------------------------------

ENROLLED, STRANGERS = 300, 200


def _lfw_people(root: Path) -> tuple[list[list[Path]], list[Path]]:
    """People with two photos or more (the first enrolled, the second a probe), and strangers:
    people of one photo, never enrolled. Alphabetical, so every run uses the same split."""
    folders = sorted(p for p in (root / "images").iterdir() if p.is_dir())
    photos = [sorted(folder.glob("*.jpg")) for folder in folders]
    return [p for p in photos if len(p) >= 2][:ENROLLED], [p[0] for p in photos if len(p) == 1][:STRANGERS]


def _centre_face(faces: list[dict], size: int = 250) -> dict:
    """LFW's labelled person is the face nearest the photo's centre (250 x 250)."""
    return min(
        faces,
        key=lambda f: (
            abs((f["bbox"][0] + f["bbox"][2]) / 2 - size / 2) + abs((f["bbox"][1] + f["bbox"][3]) / 2 - size / 2)
        ),
    )


def test_strangers_stay_strangers_in_a_gallery_of_real_people(client, operator_headers):
    people, strangers = _lfw_people(images.dataset_dir("LFW_DIR"))
    manifest = [{"file": photos[0].name, "name": photos[0].parent.name} for photos in people]
    response = client.post(
        "/api/v1/enrollments",
        data={
            "consent": "true",
            "gallery": "lfw",
            "manifest": json.dumps(manifest),
            "images": [upload(photos[0].read_bytes(), photos[0].name) for photos in people],
        },
        headers=operator_headers,
        content_type=MULTIPART,
    )
    assert response.status_code == 202, response.get_json()
    deadline = time.monotonic() + 600
    while (batch := client.get(response.headers["Location"], headers=operator_headers).get_json())["status"] in (
        "queued",
        "running",
    ):
        assert time.monotonic() < deadline, batch["status"]
        time.sleep(1)
    enrolled = {item["name"] for item in batch["items"] if item["status"] == "succeeded"}
    assert len(enrolled) >= 0.9 * ENROLLED  # a few LFW photos are refused (two faces, blur)

    false_matches = 0
    for photo in strangers:
        result = _recognize(client, operator_headers, photo.read_bytes(), gallery="lfw", top_k="1")
        false_matches += bool(_centre_face(result["faces"])["matches"]) if result["faces"] else 0
    misses = 0
    probes = [photos[1] for photos in people if photos[1].parent.name in enrolled]
    for photo in probes:
        result = _recognize(client, operator_headers, photo.read_bytes(), gallery="lfw", top_k="1")
        matches = _centre_face(result["faces"])["matches"] if result["faces"] else []
        misses += not matches or matches[0]["name"] != photo.parent.name
    fpir, fnir = false_matches / len(strangers), misses / len(probes)
    # The derived threshold for ~300 faces aims at MATCH_FPIR 0.75 %; on LFW the benchmark
    # measured FPIR 0.6 % and FNIR 1 to 2.5 % at this size (docs/RECOGNITION.md). A sample of
    # 200 strangers allows a few false matches by chance: at most 3 % (6 of 200).
    assert result["threshold_source"] == "match_fpir" and result["threshold"] > 0.30
    assert fpir <= 0.03, (fpir, false_matches)
    assert fnir <= 0.05, (fnir, misses)
