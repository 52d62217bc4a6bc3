"""Each role of the image (`docker run IMAGE worker`) refuses to start, naming what is missing,
when FACEAPI_ENV=production lacks the connections it needs: before, a worker without REDIS_URL
retried Celery's default broker (amqp://guest@127.0.0.1:5672) for minutes (make test-image found it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NEEDS = {
    "web": ["DATABASE_URL", "REDIS_URL", "JWT_SECRET_KEY"],
    "worker": ["DATABASE_URL", "REDIS_URL"],
    "webhooks": ["DATABASE_URL", "REDIS_URL"],
    "beat": ["REDIS_URL"],
    "flower": ["REDIS_URL"],
    "migrate": ["DATABASE_URL"],
    "backup": ["DATABASE_URL"],
}


def start(role: str, tmp_path: Path, **settings: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT), "DATA_DIR": str(tmp_path)}
    env |= {"FACEAPI_ENV": "production", **settings}
    return subprocess.run(
        [sys.executable, "-m", "stack.serve", role], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("role", sorted(NEEDS))
def test_a_production_role_without_its_connections_refuses_to_start(role, tmp_path):
    started = start(role, tmp_path)
    assert started.returncode == 1
    message = started.stderr.strip().splitlines()[-1]
    assert message.startswith(f"{role}: {', '.join(NEEDS[role])} must be set"), started.stderr[-500:]
    assert "Traceback" not in started.stderr


def test_a_secret_file_counts_as_set(tmp_path):
    (tmp_path / "redis_url").write_text("redis://127.0.0.1:9/0\n")
    started = start("worker", tmp_path, REDIS_URL_FILE=str(tmp_path / "redis_url"))
    assert started.returncode == 1
    assert started.stderr.strip().splitlines()[-1].startswith("worker: DATABASE_URL must be set")
