"""The SDK and the `faceapi` command line for the face-level tools, over real HTTP: choosing the
face of a group photo (target_face / --target-face), a face's crop, moving a face and merging persons."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests import images

faceapi_client = pytest.importorskip(
    "faceapi_client", reason="the SDK is not installed: .venv/bin/pip install -e clients/python"
)
from faceapi_client import FaceAPI, errors  # noqa: E402

GROUP = images.group_photo()
TOM = images.tom_hanks()


def _group_faces(api: FaceAPI, gallery: str) -> list[str]:
    with pytest.raises(errors.JobFailed) as refused:
        api.enroll_person(GROUP, name="Anyone", gallery=gallery)
    assert refused.value.code == "multiple_faces"
    return refused.value.details["target_faces"]


def test_the_sdk_chooses_a_face_reads_its_crop_moves_it_and_merges(api):
    targets = _group_faces(api, "sdk")
    x, y, w, h = (float(v) for v in targets[1].split(","))
    chosen = api.enroll_person(GROUP, name="Second", gallery="sdk", target_face=(x, y, w, h))
    assert chosen.result.bbox == pytest.approx([x, y, x + w, y + h], abs=1.5)
    other = api.enroll_person(GROUP, name="Fifth", gallery="sdk", target_face=targets[4])

    person = api.get_person(chosen.result.person_id)
    assert person.faces[0].crop_url
    crop = api.get_face_crop(person.id, person.faces[0].id)
    assert crop[:2] == b"\xff\xd8"  # a JPEG

    moved_to = api.move_face(person.id, person.faces[0].id, other.result.person_id)
    assert moved_to.face_count == 2 and api.get_person(person.id).face_count == 0
    merged = api.merge_persons(person.id, other.result.person_id)
    assert merged.id == other.result.person_id and merged.face_count == 2
    with pytest.raises(errors.NotFound):
        api.get_person(person.id)


def _faceapi(url: str, account, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEAPI_")}
    env.update(FACEAPI_URL=url, FACEAPI_EMAIL=account[0], FACEAPI_PASSWORD=account[1])
    return subprocess.run(
        [sys.executable, "-m", "faceapi_client", *args], env=env, capture_output=True, text=True, timeout=180
    )


def test_the_command_line_lists_the_faces_to_choose_and_enrolls_the_chosen_one(server, account, tmp_path):
    photo = tmp_path / "group.jpg"
    photo.write_bytes(GROUP)
    refused = _faceapi(server.url, account, "persons", "add", str(photo), "--name", "Somebody", "--gallery", "cli")
    assert refused.returncode == 1, refused.stderr
    choices = [line.split()[-1] for line in refused.stderr.splitlines() if "--target-face" in line]
    assert "multiple_faces" in refused.stderr and len(choices) >= 4

    done = _faceapi(
        server.url, account, "persons", "add", str(photo), "--name", "Third", "--gallery", "cli",
        "--target-face", choices[2],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    person_id, face_id = done.stdout.split()[1].rstrip(":"), done.stdout.split()[3]
    out = tmp_path / "crop.jpg"
    saved = _faceapi(server.url, account, "persons", "crop", person_id, face_id, "-o", str(out))
    assert saved.returncode == 0, saved.stderr
    assert out.read_bytes()[:2] == b"\xff\xd8"
