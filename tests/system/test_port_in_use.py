"""`make run` on a port another process holds says so in one line and starts nothing: it printed
its banner with URLs that led to the other instance, then stopped with 'web exited with status 1'."""

from __future__ import annotations

import socket
import subprocess
import sys

from tests.conftest import ROOT, free_port, stack_env


def test_a_port_in_use_is_named_with_the_variable_that_moves_it(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = stack_env(tmp_path / "data", port, FLOWER_PORT=str(free_port()))
        completed = subprocess.run(
            [sys.executable, "-m", "stack.run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
    assert completed.returncode == 1
    assert f"PORT={port} already in use" in completed.stderr, completed.stderr
    assert "Traceback" not in completed.stderr and "http://" not in completed.stdout
    assert not (tmp_path / "data" / "pg").exists()  # nothing was started
