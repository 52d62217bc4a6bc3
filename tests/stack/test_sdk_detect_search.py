"""The SDK and the CLI for detection and search by a stored face, over real HTTP with the real worker."""

from __future__ import annotations

import json

import pytest

from tests import images

faceapi_client = pytest.importorskip(
    "faceapi_client", reason="the SDK is not installed: .venv/bin/pip install -e clients/python"
)
from faceapi_client import models  # noqa: E402


@pytest.fixture()
def cli(server, account, cli):
    """`faceapi` as `account` (conftest's `cli`, signed in)."""
    env = {"FACEAPI_URL": server.url, "FACEAPI_EMAIL": account[0], "FACEAPI_PASSWORD": account[1]}
    return lambda *args: cli(*args, env=env)


def test_sdk_detect_and_search(api):
    job = api.detect(images.group_photo(), landmarks=106)
    assert isinstance(job, models.DetectJob) and isinstance(job.result, models.DetectResult)
    assert len(job.result.faces) == 6
    face = job.result.faces[0]
    assert face.pose is not None and face.quality_for_recognition in ("high", "medium", "low")
    assert set(face.keypoints) == {"left_eye", "right_eye", "nose", "mouth_left", "mouth_right"}
    assert len(face.landmarks_106) == 106

    tom = images.tom_hanks()
    enrolled = api.enroll_person(tom, name="Tom Hanks", gallery="sdk-search")
    api.add_face(enrolled.result.person_id, images.another_photo(tom, scale=2.0))
    assert [p.name for p in api.iter_persons("sdk-search", q="HANKS")] == ["Tom Hanks"]
    found = api.search(enrolled.result.face_id)
    assert isinstance(found, models.SearchResult)
    assert found.best is not None and found.best.person_id == enrolled.result.person_id

    recognized = api.recognize(images.another_photo(tom, scale=1.5), gallery="sdk-search")
    assert recognized.result.faces[0].pose is not None
    assert recognized.result.faces[0].quality_for_recognition in ("high", "medium", "low")


def test_cli_detect_search_and_persons_q(api, cli, tmp_path):
    photo = tmp_path / "group.jpg"
    photo.write_bytes(images.group_photo())
    table = cli("detect", str(photo))
    assert table.returncode == 0, table.stderr
    assert "6 face(s)" in table.stdout and "yaw/pitch/roll" in table.stdout
    as_json = cli("detect", str(photo), "--landmarks", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert len(json.loads(as_json.stdout)["faces"][0]["landmarks_106"]) == 106

    tom = images.tom_hanks()
    enrolled = api.enroll_person(tom, name="Tom Hanks", gallery="cli-search")
    api.add_face(enrolled.result.person_id, images.another_photo(tom, scale=2.0))
    searched = cli("search", enrolled.result.face_id, "--json")
    assert searched.returncode == 0, searched.stderr
    assert json.loads(searched.stdout)["matches"][0]["person_id"] == enrolled.result.person_id
    listed = cli("persons", "list", "--gallery", "cli-search", "-q", "tom")
    assert listed.returncode == 0 and "Tom Hanks" in listed.stdout
    missing = cli("persons", "list", "--gallery", "CLI-search")
    assert missing.returncode != 0 and "cli-search" in missing.stderr  # the did-you-mean reaches the user
