"""Real photos from ../shared/datasets/faces (skipped without FACES_DATASET_DIR): second photos of
the same people are matched, other people are not, group photos list every face."""

from __future__ import annotations

import pytest

from tests import images
from tests.conftest import enroll, recognize, wait_for_job

pytestmark = [pytest.mark.dataset, pytest.mark.usefixtures("worker")]

ENROLL = {
    "personA": "compreface_samples/personA/001_A.jpg",
    "personB": "compreface_samples/personB/007_B.jpg",
    "biden": "face_recognition/biden/biden.jpg",
}
PROBES = [
    ("compreface_samples/personA/002_A.jpg", "personA"),
    ("compreface_samples/personA/004_A.jpg", "personA"),
    ("compreface_samples/personB/008_B.jpg", "personB"),
]


@pytest.fixture()
def gallery(client, operator_headers) -> dict[str, str]:
    root = images.dataset_dir()
    person_ids = {}
    for name, path in ENROLL.items():
        enrolled = enroll(client, operator_headers, (root / path).read_bytes(), name)
        job = wait_for_job(client, operator_headers, enrolled["job_id"])
        assert job["status"] == "succeeded", job
        person_ids[name] = enrolled["person_id"]
    return person_ids


def test_second_photos_match_the_right_person(client, operator_headers, gallery):
    root = images.dataset_dir()
    for path, expected in PROBES:
        result = recognize(client, operator_headers, (root / path).read_bytes())
        assert result["status"] == "succeeded", result
        best = result["result"]["faces"][0]["matches"]
        assert best and best[0]["person_id"] == gallery[expected], (path, best)


def test_unenrolled_person_in_a_group_is_not_matched(client, operator_headers, gallery):
    root = images.dataset_dir()
    result = recognize(client, operator_headers, (root / "face_recognition/_group/obama_and_biden.jpg").read_bytes())
    faces = result["result"]["faces"]
    assert len(faces) >= 2  # Obama, Biden (and a face in the background)
    matched = [face["matches"][0]["name"] for face in faces if face["matches"]]
    assert matched == ["biden"]  # Obama was never enrolled


@pytest.mark.parametrize(
    ("path", "count"), [("compreface_samples/_group/000_5.jpg", 5), ("compreface_samples/_group/012_4.jpg", 4)]
)
def test_group_photo_lists_each_face(client, operator_headers, gallery, path, count):
    result = recognize(client, operator_headers, (images.dataset_dir() / path).read_bytes())
    assert len(result["result"]["faces"]) == count


def test_real_photo_without_a_face(client, operator_headers, gallery):
    result = recognize(
        client, operator_headers, (images.dataset_dir() / "compreface_samples/_noface/017_0.jpg").read_bytes()
    )
    assert result["status"] == "failed"
    assert result["error"]["code"] == "no_face"
