"""The README's walk-through reads ada.jpg, ada-2.jpg and team.jpg; a newcomer without photos of
their own gets them from the installed insightface package with the README's `sh` block, run here
as written (with this interpreter for `.venv/bin/python`). Before, the README named the files and
nothing said where to get any."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import ROOT
from tests.images import insightface_images_dir


def _sample_photos_block() -> str:
    section = (ROOT / "README.md").read_text().split("## Walk-through with curl", 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def test_the_readme_makes_the_walkthroughs_photos_from_the_insightface_package(tmp_path):
    script = _sample_photos_block().replace(".venv/bin/python", sys.executable)
    subprocess.run(["sh", "-eu", "-c", script], cwd=tmp_path, check=True, timeout=60)
    photos = insightface_images_dir()
    assert (tmp_path / "ada.jpg").read_bytes() == (photos / "Tom_Hanks_54745.png").read_bytes()
    assert (tmp_path / "ada-2.jpg").exists()
    assert (tmp_path / "team.jpg").read_bytes() == (photos / "t1.jpg").read_bytes()
