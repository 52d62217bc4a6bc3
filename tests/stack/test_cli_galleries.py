"""`faceapi galleries export | import | reembed` as a user runs them, each in its own process, against
the real stack over HTTP: an archive written by one organisation, imported by another, recognizes the
same person; a damaged file fails in one line; re-embedding with the same model is a quick switch."""

from __future__ import annotations

import json

import pytest

from tests import images
from tests.conftest import make_account
from tests.stack.test_cli import _env, faceapi

pytest.importorskip("faceapi_client", reason="the SDK is not installed: .venv/bin/pip install -e clients/python")
from faceapi_client import FaceAPI  # noqa: E402

TOM = images.tom_hanks()


def test_export_import_and_reembed_from_the_command_line(live_server, tmp_path):
    source, target = make_account("operator"), make_account("operator")
    with FaceAPI(url=live_server.url, email=source[0], password=source[1]) as api:
        api.login()
        person = api.enroll_person(TOM, name="Tom Hanks", gallery="cli-source", external_id="th")
        assert person.status == "succeeded", person

    archive = tmp_path / "gallery.zip"
    exported = faceapi("galleries", "export", "cli-source", "-o", str(archive), env=_env(live_server.url, *source))
    assert exported.returncode == 0, exported.stderr
    assert archive.stat().st_size > 0 and "exported to" in exported.stderr

    target_env = _env(live_server.url, *target)
    imported = faceapi("galleries", "import", "cli-target", str(archive), "--json", env=target_env)
    assert imported.returncode == 0, imported.stderr
    result = json.loads(imported.stdout)
    assert result["persons"]["created"] == 1 and result["faces"]["added"] == 1

    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(archive.read_bytes()[:-10] + b"0123456789")
    refused = faceapi("galleries", "import", "cli-target", str(damaged), env=target_env)
    assert refused.returncode != 0 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "invalid_archive" in refused.stderr

    reembedded = faceapi("galleries", "reembed", "cli-target", "--json", env=target_env)
    assert reembedded.returncode == 0, reembedded.stderr
    assert json.loads(reembedded.stdout)["reembedded"] == 0  # the same model: nothing to embed again

    with FaceAPI(url=live_server.url, email=target[0], password=target[1]) as api:
        api.login()
        recognized = api.recognize(images.another_photo(TOM, scale=2.0), gallery="cli-target")
        assert recognized.result.faces[0].matches[0].name == "Tom Hanks"
