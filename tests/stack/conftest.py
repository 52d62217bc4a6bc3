"""What the SDK and command-line tests share: the app over real HTTP with the session's worker,
a fresh operator, a client signed in as it, and `faceapi` run in this process."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import make_account


@pytest.fixture(scope="module")
def server(live_server):
    return live_server


@pytest.fixture()
def account(server) -> tuple[str, str]:
    """A fresh operator in an organisation of its own."""
    return make_account("operator")


@pytest.fixture()
def api(server, account) -> Iterator:
    """The SDK signed in as `account`."""
    from faceapi_client import FaceAPI

    with FaceAPI(server.url, email=account[0], password=account[1], timeout=60) as client:
        yield client


@pytest.fixture()
def cli(monkeypatch, capsys) -> Callable[..., subprocess.CompletedProcess]:
    """`faceapi` run in this process (quicker than a process per command; the enroll and failure
    tests use real processes) with only the FACEAPI_* variables given in `env`: returns what a
    process would, exit code, stdout and stderr."""
    from faceapi_client.cli import main

    def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
        for name in [n for n in os.environ if n.startswith("FACEAPI_")]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            if name.startswith("FACEAPI_"):
                monkeypatch.setenv(name, value)
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as finished:
            code = finished.code
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    return run
