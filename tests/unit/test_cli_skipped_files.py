"""`faceapi enroll` reports every file it does not send, with why and what to do: an iPhone
folder of HEIC photos no longer dry-runs as "1 photo, problems 0"."""

from __future__ import annotations

import io

import pytest
from faceapi_client.cli import main
from PIL import Image


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture()
def iphone_folder(tmp_path):
    folder = tmp_path / "photos"
    (folder / "Alice").mkdir(parents=True)
    (folder / "Alice" / "a.jpg").write_bytes(_jpeg())
    (folder / "Alice" / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (folder / "Alice" / "party.gif").write_bytes(b"GIF89a")
    (folder / "Alice" / "notes.txt").write_text("not a photo")
    (folder / "Alice" / ".DS_Store").write_bytes(b"")
    return folder


def test_the_dry_run_lists_each_skipped_file_with_why_and_what_to_do(iphone_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status = main(["enroll", str(iphone_folder), "--gallery", "staff", "--dry-run", "--url", "http://127.0.0.1:9"])
    shown = capsys.readouterr().out
    assert status == 0
    assert "skipped, not sent                3" in shown
    heic = next(line for line in shown.splitlines() if "IMG_0001.HEIC" in line)
    assert "HEIC" in heic and "convert it to JPEG" in heic
    assert "Alice/party.gif: GIF is not accepted; convert it to PNG or JPEG" in shown
    assert "Alice/notes.txt: not a photo" in shown
    assert ".DS_Store" not in shown  # hidden files are no one's photos


def test_a_folder_of_only_heic_photos_says_why_nothing_is_sent(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos" / "Bob").mkdir(parents=True)
    (tmp_path / "photos" / "Bob" / "IMG_0002.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    status = main(["enroll", str(tmp_path / "photos"), "--gallery", "staff", "--dry-run"])
    error = capsys.readouterr().err
    assert status != 0 and "IMG_0002.heic" in error and "convert it to JPEG" in error
