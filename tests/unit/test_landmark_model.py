"""The 106-point landmark model is found in the model pack and checked by sha256 like the others."""

from __future__ import annotations

import shutil

import pytest

from config import get_settings
from workers.engine import (
    LANDMARK_FILE,
    LANDMARK_SHA256,
    ModelError,
    bundled_pack_dir,
    resolve_landmark_model,
    sha256_of,
)


def test_the_bundled_model_is_the_pinned_one():
    path = resolve_landmark_model(get_settings())
    assert path == bundled_pack_dir() / LANDMARK_FILE
    assert sha256_of(path) == LANDMARK_SHA256


def test_a_pack_without_the_model_says_which_file_is_missing(tmp_path):
    settings = get_settings().model_copy(update={"model_pack_dir": tmp_path})
    with pytest.raises(ModelError, match=LANDMARK_FILE):
        resolve_landmark_model(settings)


def test_a_pack_whose_file_differs_from_its_sha256sums_is_refused(tmp_path):
    shutil.copy(bundled_pack_dir() / LANDMARK_FILE, tmp_path / LANDMARK_FILE)
    settings = get_settings().model_copy(update={"model_pack_dir": tmp_path})
    (tmp_path / "SHA256SUMS").write_text(f"{LANDMARK_SHA256}  {LANDMARK_FILE}\n")
    assert resolve_landmark_model(settings) == tmp_path / LANDMARK_FILE
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  {LANDMARK_FILE}\n")
    with pytest.raises(ModelError, match="sha256"):
        resolve_landmark_model(settings)
