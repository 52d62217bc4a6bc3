"""Backup and restore (stack/backup.py) as the README's procedure runs them.

A person is enrolled through the API and the real worker; `python -m stack.backup dump` dumps the
tests' database; `restore` puts the dump into a fresh embedded PostgreSQL (its own DATA_DIR, as on
a new machine); there the restored account logs in and recognizes the person in another photo.
Restoring into a database that holds data, or a dump made by another model, is refused.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

from tests import images
from tests.conftest import ROOT, bearer, enroll, free_port, login, wait_for_job

RECOGNIZE_IN_RESTORED = """
import json, sys
from stack.embedded import ensure_services
services = ensure_services()  # the restored DATA_DIR's PostgreSQL, and a Redis of its own
try:
    from web import create_app
    from config import get_settings
    from workers.context import WorkerContext
    from workers.pipeline import process_job
    from tests import images
    from tests.conftest import bearer, login, upload
    client = create_app({"TESTING": True}).test_client()
    email, password, gallery = sys.argv[1:4]
    headers = bearer(login(client, email, password)["access_token"])
    submitted = client.post("/api/v1/recognize", headers=headers, content_type="multipart/form-data",
                            data={"image": upload(images.another_photo(images.tom_hanks())), "gallery": gallery})
    assert submitted.status_code == 202, submitted.get_json()
    job_id = submitted.get_json()["job_id"]
    # No worker runs against this database: the pipeline runs here.
    process_job(job_id, WorkerContext.of(get_settings()))
    print(json.dumps(client.get(f"/api/v1/jobs/{job_id}", headers=headers).get_json()))
finally:
    services.stop()
"""


def backup(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stack.backup", *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def fresh_machine(data_dir: Path) -> dict[str, str]:
    """The environment of a new machine: no DATABASE_URL, so the embedded PostgreSQL of DATA_DIR starts."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return env | {"DATA_DIR": str(data_dir), "EMBEDDED_REDIS_PORT": str(free_port())}


def test_a_dump_restores_into_a_fresh_postgresql_that_recognizes_who_was_enrolled(
    services, worker, client, operator_account, tmp_path
):
    headers = bearer(login(client, *operator_account)["access_token"])
    gallery = f"backup-{uuid.uuid4().hex[:8]}"
    enrolled = enroll(client, headers, images.tom_hanks(), "Tom Hanks", gallery=gallery)
    assert wait_for_job(client, headers, enrolled["job_id"])["status"] == "succeeded"

    dump_path = tmp_path / "backups" / "faceapi.dump"
    dumped = backup("dump", str(dump_path), env=dict(os.environ))
    assert dumped.returncode == 0, dumped.stderr[-3000:]
    manifest = json.loads(Path(str(dump_path) + ".json").read_text())
    assert manifest["models"].get("w600k_mbf", 0) >= 1 and manifest["schema_revision"]
    assert not (tmp_path / "backups" / "faceapi.dump.partial").exists()
    inspected = backup("inspect", str(dump_path), env=dict(os.environ))
    assert json.loads(inspected.stdout) == manifest

    restored_env = fresh_machine(tmp_path / "restored")
    restored = backup("restore", str(dump_path), env=restored_env)
    assert restored.returncode == 0, restored.stderr[-3000:]
    result = json.loads(restored.stdout.strip().splitlines()[-1])
    assert result["schema_revision"] == manifest["schema_revision"] and result["models"] == manifest["models"]

    recognized = subprocess.run(
        [sys.executable, "-c", RECOGNIZE_IN_RESTORED, *operator_account, gallery],
        cwd=ROOT,
        env=restored_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert recognized.returncode == 0, recognized.stderr[-3000:]
    job = json.loads(recognized.stdout.strip().splitlines()[-1])
    assert job["status"] == "succeeded", job
    matches = [match["person_id"] for face in job["result"]["faces"] for match in face["matches"]]
    assert matches[:1] == [enrolled["person_id"]], job["result"]

    again = backup("restore", str(dump_path), env=restored_env)
    assert again.returncode == 1 and "not empty" in again.stderr  # never over existing data


def test_a_dump_of_another_model_is_refused(tmp_path):
    dump_path = tmp_path / "other.dump"
    dump_path.write_bytes(b"not read: the manifest is checked first")
    manifest = {"file": "other.dump", "models": {"w600k_r50": 12}, "schema_revision": "0009"}
    Path(str(dump_path) + ".json").write_text(json.dumps(manifest))
    refused = backup("restore", str(dump_path), env=fresh_machine(tmp_path / "data"))
    assert refused.returncode == 1
    assert "w600k_r50" in refused.stderr and "w600k_mbf" in refused.stderr and "--any-model" in refused.stderr


def test_dumps_go_to_timestamped_files_and_old_ones_are_pruned(tmp_path):
    from stack.backup import prune, target_path

    assert target_path(tmp_path / "x.dump") == tmp_path / "x.dump"
    inside = target_path(tmp_path)
    assert inside.parent == tmp_path and re.fullmatch(r"faceapi-\d{8}T\d{6}Z\.dump", inside.name)
    for day in range(1, 6):
        (tmp_path / f"faceapi-2026010{day}T031700Z.dump").write_bytes(b"")
        (tmp_path / f"faceapi-2026010{day}T031700Z.dump.json").write_text("{}")
    (tmp_path / "keep-me.dump").write_bytes(b"")
    assert prune(tmp_path, 2) == [f"faceapi-2026010{day}T031700Z.dump" for day in (1, 2, 3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "faceapi-20260104T031700Z.dump",
        "faceapi-20260104T031700Z.dump.json",
        "faceapi-20260105T031700Z.dump",
        "faceapi-20260105T031700Z.dump.json",
        "keep-me.dump",
    ]
