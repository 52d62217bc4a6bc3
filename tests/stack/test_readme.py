"""The README's curl walk-through, run as written against a real HTTP server: the
commands are taken from README.md itself, so the document cannot drift from the service."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests import images
from tests.conftest import ROOT
from tests.live_server import LiveServer

pytestmark = pytest.mark.usefixtures("worker")
README_BASE = "http://127.0.0.1:8000"
README_ADMIN = ("admin@example.com", "a long password")


def walkthrough() -> str:
    """The first bash block under "## Walk-through with curl"."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Walk-through with curl", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def _readme_admin() -> None:
    from sqlalchemy import select

    from config import get_settings
    from domain.accounts import create_account
    from domain.db import session_scope
    from domain.models import Account, Role

    with session_scope() as session:
        if session.execute(select(Account).where(Account.email == README_ADMIN[0])).scalar_one_or_none() is None:
            create_account(session, *README_ADMIN, Role.admin, settings=get_settings())


def test_the_curl_walkthrough_runs_as_written(app, tmp_path):
    for tool in ("curl", "jq", "bash"):
        if shutil.which(tool) is None:
            pytest.skip(f"the README walk-through needs {tool}, which is not installed here")
    _readme_admin()
    (tmp_path / "ada.jpg").write_bytes(images.as_jpeg(images.tom_hanks()))
    (tmp_path / "ada-2.jpg").write_bytes(images.another_photo(images.tom_hanks(), scale=2.0))
    (tmp_path / "team.jpg").write_bytes(images.another_photo(images.tom_hanks(), scale=1.5))
    server = LiveServer(app)
    try:
        script = walkthrough().replace(README_BASE, server.url)
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
    finally:
        server.close()
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert out.count('"status": "succeeded"') == 2, out  # the enrollment and the added photo
    assert '"name": "Ada Lovelace"' in out and '"external_id": "emp-42"' in out  # recognized
    assert out.strip().endswith("204"), out  # deleted
