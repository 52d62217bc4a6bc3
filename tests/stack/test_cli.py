"""The `faceapi` command line (clients/python) as a user runs it, in its own process, against the real
stack over HTTP: a folder enrolled through a mapping file, interrupted with Ctrl-C (SIGINT) and run
again until done with nothing enrolled twice, then into a second gallery; failures that end with
one line and an exit code; recognize, verify and the resource commands; --help everywhere."""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import images
from tests.conftest import ROOT, free_port, make_account

faceapi_client = pytest.importorskip(
    "faceapi_client", reason="the SDK is not installed: .venv/bin/pip install -e clients/python"
)
from faceapi_client import FaceAPI  # noqa: E402
from faceapi_client.cli import build_parser  # noqa: E402

TOM = images.tom_hanks()
GROUP = images.group_photo()
FACE_0 = images.crop(GROUP, (0, 170, 260, 490))
FACE_2 = images.crop(GROUP, (400, 180, 640, 500))
FACE_3 = images.crop(GROUP, (680, 250, 910, 560))


def _env(url: str, email: str | None = None, password: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEAPI_")}
    env.update(FACEAPI_URL=url, PYTHONUNBUFFERED="1", **extra)
    if email:
        env.update(FACEAPI_EMAIL=email, FACEAPI_PASSWORD=password or "")
    return env


def faceapi(*args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 180):
    return subprocess.run(
        [sys.executable, "-m", "faceapi_client", *args],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line_failure(result: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    """A failure: the exit code, one line on stderr (no traceback), naming what went wrong."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# --- enroll ------------------------------------------------------------------------------------------

PHOTOS = {  # file (relative to the folder): (photo, name, external_id)
    "IMG_0001.png": (TOM, "Tom Hanks", "emp-1"),
    "IMG_0002.jpg": (images.another_photo(TOM, scale=2.0), "Tom Hanks", "emp-1"),
    "IMG_0003.jpg": (images.tilted_photo(TOM), "Tom Hanks", "emp-1"),
    "2024/IMG_0004.jpg": (FACE_0, "Ann Lee", ""),
    "2024/IMG_0005.jpg": (images.another_photo(FACE_0), "Ann Lee", ""),
    "2024/IMG_0006.jpg": (FACE_2, "Bo Ek", "emp-2"),
    "2024/IMG_0007.jpg": (images.another_photo(FACE_2), "Bo Ek", "emp-2"),
    "IMG_0008.jpg": (FACE_3, "Cy Young", "emp-3"),
    "IMG_0009.jpg": (images.no_face_photo(), "Nobody", "emp-4"),
}
MISSING = "IMG_0099.jpg"  # named by the mapping, not in the folder


def _photo_folder(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "camera roll"
    for file, (data, _, _) in PHOTOS.items():
        (folder / file).parent.mkdir(parents=True, exist_ok=True)
        (folder / file).write_bytes(data)
    (folder / "notes.txt").write_text("not a photo")
    mapping = tmp_path / "people.csv"
    with mapping.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["file", "name", "external_id"])
        for file, (_, name, external_id) in PHOTOS.items():
            writer.writerow([file, name, external_id])
        writer.writerow([MISSING, "Ghost", "emp-5"])
    return folder, mapping


def _done(report: Path) -> int:
    try:
        photos = json.loads(report.read_text())["photos"]
    except (OSError, ValueError, KeyError):
        return 0
    return sum(record.get("status") in ("enrolled", "duplicate") for record in photos.values())


def _assert_one_face_per_photo(api: FaceAPI, gallery: str) -> None:
    expected: dict[str, set[str]] = {}
    for data, name, _ in PHOTOS.values():
        if name != "Nobody":
            expected.setdefault(name, set()).add(hashlib.sha256(data).hexdigest()[:12])
    persons = list(api.iter_persons(gallery))
    assert sorted(p.name for p in persons) == sorted(expected)
    for person in persons:
        prefixes = sorted(face.photo_sha256_prefix for face in api.list_faces(person.id))
        assert prefixes == sorted(expected[person.name]), (person.name, prefixes)
    ids = {p.name: p.external_id for p in persons}
    assert ids == {"Tom Hanks": "emp-1", "Ann Lee": None, "Bo Ek": "emp-2", "Cy Young": "emp-3"}


def test_enroll_with_a_mapping_interrupted_and_rerun_then_into_a_second_gallery(server, account, tmp_path):
    folder, mapping = _photo_folder(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    env = _env(server.url, *account)
    args = ["enroll", str(folder), "--gallery", "staff", "--mapping", str(mapping), "--batch-size", "1"]
    report = work / "faceapi-enroll-camera_roll-staff.json"

    # 1. Ctrl-C once a photo is enrolled
    process = subprocess.Popen(
        [sys.executable, "-m", "faceapi_client", *args],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while _done(report) < 1:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no photo enrolled in time"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    interrupted = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    assert_one_line_failure(interrupted, 130, "interrupted", "run the same command again", str(report))
    assert 1 <= _done(report) < 8

    # 2. Run again: it finishes; the summary names each failure with its message.
    second = faceapi(*args, env=env, cwd=work)
    assert_one_line_failure(second, 1, "2 of 10 photos failed", str(report))
    assert "IMG_0009.jpg: No face was found in the photo. (no_face)" in second.stdout
    assert f"{MISSING}: " in second.stdout and "does not exist" in second.stdout

    # 3. And again: nothing is sent, nothing changes.
    third = faceapi(*args, env=env, cwd=work)
    assert third.returncode == 1, third.stderr
    assert "enrolled now                  0" in third.stdout
    assert "done in an earlier run        8" in third.stdout

    with FaceAPI(server.url, email=account[0], password=account[1]) as api:
        _assert_one_face_per_photo(api, "staff")
        # 4. Into a second gallery: enrolled there too (its own report, by default).
        other = faceapi(*args[:3], "visitors", *args[4:], env=env, cwd=work)
        assert other.returncode == 1, other.stderr
        assert "enrolled now                  8" in other.stdout
        assert (work / "faceapi-enroll-camera_roll-visitors.json").exists()
        _assert_one_face_per_photo(api, "visitors")
        _assert_one_face_per_photo(api, "staff")
    assert not list(folder.rglob("*.json")), "a report was written into the photo folder"


def test_enroll_a_folder_per_person_dry_run_and_where_the_report_goes(server, account, tmp_path):
    folder = tmp_path / "people"
    (folder / "Tom Hanks").mkdir(parents=True)
    (folder / "Tom Hanks" / "a.png").write_bytes(TOM)
    (folder / "Tom Hanks" / ".hidden.jpg").write_bytes(TOM)
    (folder / "Cy Young").mkdir()
    (folder / "Cy Young" / "1.jpg").write_bytes(FACE_3)
    (folder / "loose.jpg").write_bytes(FACE_0)

    # a dry run needs no service and sends nothing
    dead = _env(f"http://127.0.0.1:{free_port()}")
    dry = faceapi("enroll", str(folder), "--gallery", "g", "--dry-run", "-v", env=dead, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "to send                          2" in dry.stdout
    assert "Tom Hanks: 1 photo(s)" in dry.stdout and "Cy Young: 1 photo(s)" in dry.stdout
    assert "1 photo(s) lie directly in" in dry.stderr
    assert not list(tmp_path.glob("*.json"))

    inside = faceapi("enroll", str(folder), "--gallery", "g", "--dry-run", env=dead, cwd=folder)
    assert_one_line_failure(inside, 2, "inside the photo folder", "--report")

    env = _env(server.url, *account)
    report = tmp_path / "reports" / "people.json"
    done = faceapi("enroll", str(folder), "--gallery", "g", "--report", str(report), env=env, cwd=folder)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "enrolled now                  2" in done.stdout
    assert json.loads(report.read_text())["summary"]["finished"] is True


# --- failures --------------------------------------------------------------------------------------------


def test_every_failure_is_one_line_and_an_exit_code(server, account, tmp_path):
    email, password = account
    folder = tmp_path / "photos"
    (folder / "Tom").mkdir(parents=True)
    (folder / "Tom" / "1.png").write_bytes(TOM)

    wrong = faceapi("enroll", str(folder), "--gallery", "g", env=_env(server.url, email, "wrong password"))
    assert_one_line_failure(wrong, 3, "Invalid email or password", "invalid_credentials")

    missing = faceapi("enroll", str(tmp_path / "nowhere"), "--gallery", "g", env=_env(server.url, email, password))
    assert_one_line_failure(missing, 2, "does not exist", "nowhere")

    down = faceapi("galleries", "list", env=_env(f"http://127.0.0.1:{free_port()}", email, password))
    assert_one_line_failure(down, 5, "Cannot reach the service", "connection_error")

    dead = f"http://127.0.0.1:{free_port()}"
    cut_off = faceapi("enroll", str(folder), "--gallery", "g", env=_env(dead, FACEAPI_API_KEY="fk_x"), cwd=tmp_path)
    assert_one_line_failure(cut_off, 5, "connection_error", "0 of 1 photos enrolled", "run the same command again")

    bad_key = faceapi("persons", "list", env=_env(server.url, FACEAPI_API_KEY="fk_00000000_not-a-real-key"))
    assert_one_line_failure(bad_key, 3)

    unknown = faceapi("persons", "show", "00000000-0000-0000-0000-000000000000", env=_env(server.url, email, password))
    assert_one_line_failure(unknown, 4, "person_not_found")

    nobody = faceapi("galleries", "list", env=_env(server.url))
    assert_one_line_failure(nobody, 2, "no credentials", "FACEAPI_API_KEY")

    typo = faceapi("recognize", "photo.jpg", "--galery", "g", env=_env(server.url, email, password))
    assert_one_line_failure(typo, 2, "--galery", "--help")

    no_face = tmp_path / "empty.jpg"
    no_face.write_bytes(images.no_face_photo())
    with FaceAPI(server.url, email=email, password=password) as api:
        api.create_gallery("g")
    failed_job = faceapi("recognize", str(no_face), "--gallery", "g", env=_env(server.url, email, password))
    assert failed_job.returncode == 1 and "No face was found" in failed_job.stdout
    assert "Traceback" not in failed_job.stderr


# --- recognize, verify and the resources ------------------------------------------------------------------


def test_recognize_verify_and_the_resource_commands(server, account, tmp_path, cli):
    email, password = account
    env = _env(server.url, email, password)
    with FaceAPI(server.url, email=email, password=password) as api:
        enrolled = api.enroll_person(TOM, name="Tom Hanks", external_id="emp-1", gallery="cli")
    probe = tmp_path / "probe.jpg"
    probe.write_bytes(images.another_photo(TOM, scale=2.0))
    stranger = tmp_path / "stranger.jpg"
    stranger.write_bytes(FACE_2)

    table = cli("recognize", str(probe), "--gallery", "cli", env=env)
    assert table.returncode == 0, table.stderr
    assert "Tom Hanks" in table.stdout and "emp-1" in table.stdout and "similarity" in table.stdout

    as_json = cli("recognize", str(probe), str(stranger), "--gallery", "cli", "--json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    documents = json.loads(as_json.stdout)
    assert documents[0]["faces"][0]["matches"][0]["person_id"] == enrolled.person_id
    assert documents[1]["faces"][0]["matches"] == []

    drawn = tmp_path / "out" / "probe-boxes.jpg"
    draw = cli("recognize", str(probe), "--gallery", "cli", "--draw", str(drawn), env=env)
    assert draw.returncode == 0, draw.stderr
    from PIL import Image

    with Image.open(drawn) as picture, Image.open(probe) as original:
        assert picture.format == "JPEG" and picture.size == original.size

    same = cli("verify", str(probe), str(tmp_path / "probe.jpg"), env=env)
    assert same.returncode == 0 and "same person: yes" in same.stdout, same.stderr
    other = cli("verify", str(probe), "--person", enrolled.person_id, "--json", env=env)
    assert json.loads(other.stdout)["same_person"] is True

    listing = cli("persons", "list", "--gallery", "cli", env=env)
    assert enrolled.person_id in listing.stdout and "Tom Hanks" in listing.stdout
    shown = cli("persons", "show", enrolled.person_id, env=env)
    assert "external_id  emp-1" in shown.stdout and enrolled.result.face_id in shown.stdout
    faces = json.loads(cli("persons", "faces", enrolled.person_id, "--json", env=env).stdout)
    assert [f["id"] for f in faces] == [enrolled.result.face_id]

    assert cli("galleries", "create", "extra", "--threshold", "0.4", env=env).returncode == 0
    galleries = {g["name"]: g for g in json.loads(cli("galleries", "list", "--json", env=env).stdout)}
    assert galleries["extra"]["match_threshold"] == 0.4 and galleries["cli"]["person_count"] == 1
    assert cli("galleries", "delete", "extra", env=env).returncode == 0

    jobs = json.loads(cli("jobs", "list", "--type", "enroll", "--json", env=env).stdout)
    assert enrolled.id in {job["id"] for job in jobs["items"]}
    job = cli("jobs", "show", enrolled.id, env=env)
    assert "enroll, succeeded" in job.stdout

    assert cli("persons", "delete", enrolled.person_id, env=env).returncode == 0
    gone = cli("persons", "show", enrolled.person_id, env=env)
    assert_one_line_failure(gone, 4, "person_not_found")


def test_api_key_commands(server, cli):
    admin_email, password = make_account("admin")
    env = _env(server.url, admin_email, password)
    created = cli("keys", "create", "ci", env=env)  # role operator by default
    if created.returncode == 4 and "not_found" in created.stderr:
        pytest.skip(f"POST /api/v1/api-keys is not served yet: {created.stderr.strip()}")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("fk_") and "\n" not in key  # alone on stdout: KEY=$(faceapi keys create ...)
    listed = json.loads(cli("keys", "list", "--json", env=env).stdout)
    (entry,) = [k for k in listed if k["name"] == "ci"]
    by_key = _env(server.url, FACEAPI_API_KEY=key)
    assert cli("galleries", "list", env=by_key).returncode == 0
    assert cli("keys", "revoke", entry["id"], env=env).returncode == 0
    revoked = cli("galleries", "list", env=by_key)
    assert_one_line_failure(revoked, 3, "FACEAPI_API_KEY")


# --- help ----------------------------------------------------------------------------------------------------


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


def test_help_on_every_command_and_option(capsys):
    from faceapi_client.cli import main

    commands = list(_commands(build_parser()))
    assert {" ".join(path) for path, _ in commands} >= {
        "enroll",
        "recognize",
        "verify",
        "persons list",
        "persons show",
        "persons delete",
        "persons faces",
        "galleries list",
        "galleries create",
        "galleries delete",
        "jobs list",
        "jobs show",
        "keys create",
        "keys list",
        "keys revoke",
    }
    for path, parser in commands:
        for action in parser._actions:
            assert action.help, f"faceapi {' '.join(path)}: {action.option_strings or action.dest} has no help"
        with pytest.raises(SystemExit) as finished:
            main([*path, "--help"])
        assert finished.value.code == 0
        text = capsys.readouterr().out
        assert "exit codes:" in text and "130" in text, path
    script = Path(sys.executable).parent / "faceapi"  # the console script
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "FACEAPI_API_KEY" in result.stdout


def test_the_mapping_file_is_checked_before_anything_is_sent(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    mapping = tmp_path / "bad.csv"
    mapping.write_text("image;who\nIMG_1.jpg;Ann\n")  # no file and name columns
    result = faceapi(
        "enroll", str(folder), "--gallery", "g", "--mapping", str(mapping), env=_env(f"http://127.0.0.1:{free_port()}")
    )
    assert_one_line_failure(result, 2, "file,name")
