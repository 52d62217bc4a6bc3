"""The command line in a new user's first hour, against the app over HTTP: `faceapi whoami` with
an API key says which key it is; `faceapi persons` without an action lists, and a missing gallery
says how to name one."""

from __future__ import annotations

import pytest

from tests.conftest import make_account

pytest.importorskip("faceapi_client", reason="the SDK is not installed: .venv/bin/pip install -e clients/python")


@pytest.fixture()
def cli(cli):
    """conftest's `cli`, with the FACEAPI_* variables as keyword arguments."""
    return lambda *args, **env: cli(*args, env=env)


def test_whoami_with_an_api_key_names_the_key(live_server, cli):
    email, password = make_account("admin")
    person = {"FACEAPI_URL": live_server.url, "FACEAPI_EMAIL": email, "FACEAPI_PASSWORD": password}
    created = cli("keys", "create", "ci-key", **person)
    assert created.returncode == 0, created.stderr
    shown = cli("whoami", FACEAPI_URL=live_server.url, FACEAPI_API_KEY=created.stdout.strip())
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("API key ci-key (") and f"of {email}" in shown.stdout


def test_persons_without_an_action_lists_and_a_missing_gallery_says_how_to_name_one(live_server, cli):
    email, password = make_account("operator")
    person = {"FACEAPI_URL": live_server.url, "FACEAPI_EMAIL": email, "FACEAPI_PASSWORD": password}
    assert cli("galleries", **person).returncode == 0
    missing = cli("persons", **person)  # no gallery named 'default' in a new organisation
    assert missing.returncode != 0
    assert "gallery_not_found" in missing.stderr and "--gallery NAME" in missing.stderr, missing.stderr
    assert "faceapi galleries" in missing.stderr
