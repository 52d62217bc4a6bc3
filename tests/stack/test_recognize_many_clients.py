"""The SDK's `recognize_many` and `faceapi recognize` with several photos: one job for many photos,
each photo's answer as a single-photo recognition would give it."""

from __future__ import annotations

import json

import pytest

from tests import images
from tests.conftest import make_account
from tests.stack.test_cli import _env

faceapi_client = pytest.importorskip(
    "faceapi_client", reason="the SDK is not installed: .venv/bin/pip install -e clients/python"
)
from faceapi_client import FaceAPI  # noqa: E402

TOM = images.tom_hanks()


def test_recognize_many_gives_each_photo_its_faces_and_errors(server):
    email, password = make_account("operator")
    with FaceAPI(server.url, email=email, password=password) as api:
        enrolled = api.enroll_person(TOM, name="Tom Hanks", gallery="many")
        job = api.recognize_many(
            [images.another_photo(TOM, scale=2.0), images.no_face_photo(), images.group_photo()], gallery="many"
        )
    photos = job.result.photos
    assert [len(photo.faces) for photo in photos] == [1, 0, 6]
    assert photos[0].faces[0].best.person_id == enrolled.person_id
    assert photos[1].error.code == "no_face"
    single = job.result.photo_result(2)
    assert len(single.faces) == 6 and single.threshold == job.result.threshold


def test_faceapi_recognize_sends_several_photos_as_one_job(server, tmp_path, cli):  # noqa: F811
    email, password = make_account("operator")
    env = _env(server.url, email, password)
    with FaceAPI(server.url, email=email, password=password) as api:
        enrolled = api.enroll_person(TOM, name="Tom Hanks", external_id="emp-1", gallery="cli-many")
    paths = []
    for name, data in (("probe", images.another_photo(TOM, scale=2.0)), ("blank", images.no_face_photo())):
        paths.append(tmp_path / f"{name}.jpg")
        paths[-1].write_bytes(data)

    as_json = cli("recognize", *map(str, paths), "--gallery", "cli-many", "--json", env=env)
    assert as_json.returncode == 1, as_json.stderr  # done, but one photo failed (EXIT_FAILED_ITEMS)
    documents = json.loads(as_json.stdout)
    assert documents[0]["faces"][0]["matches"][0]["person_id"] == enrolled.person_id
    assert "photos" not in documents[0] and documents[0]["photo"] == str(paths[0])
    assert documents[1]["error"]["code"] == "no_face"
    with FaceAPI(server.url, email=email, password=password) as api:
        recognitions = api.list_jobs(type="recognize").items
    assert len(recognitions) == 1  # one job for both photos

    table = cli("recognize", *map(str, paths), "--gallery", "cli-many", env=env)
    assert "Tom Hanks" in table.stdout and f"{paths[1]}: " in table.stdout and "(no_face)" in table.stdout
