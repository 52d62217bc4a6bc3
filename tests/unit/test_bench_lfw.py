"""The LFW benchmark runs end to end on a small balanced slice of the pairs (about 10 s)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAST_LINE = re.compile(
    r"^lfw accuracy=\d\.\d{4} std=\d\.\d{4} tar_at_far_1e-3=\d\.\d{4} threshold=-?\d\.\d{4} pairs=\d+ undetected=\d+$"
)

pytestmark = pytest.mark.dataset


def lfw_dir() -> Path:
    value = os.environ.get("LFW_DIR")
    if not value:
        pytest.skip("LFW_DIR not set: point it at the LFW dev half (../shared/datasets/lfw-dev) to run the benchmark")
    path = Path(value).expanduser()
    if not (path / "pairs.txt").is_file() or not (path / "images").is_dir():
        pytest.skip(f"LFW_DIR={value} has no pairs.txt and images/: the LFW dataset is missing")
    return path


def test_lfw_benchmark_small_slice(tmp_path: Path) -> None:
    directory = lfw_dir()
    out = tmp_path / "results"
    completed = subprocess.run(
        [sys.executable, "-m", "bench.lfw", "--lfw-dir", str(directory), "--limit-pairs", "40"]
        + ["--variant", "d320_t0.5", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    last = completed.stdout.strip().splitlines()[-1]
    assert LAST_LINE.match(last), last
    assert "pairs=40 " in last

    result = json.loads((out / "lfw_d320_t0.5.json").read_text())
    assert result["pairs"] == 40
    assert len(result["folds"]) == 5
    assert result["roc"] and result["thresholds"]
    assert 0.0 <= result["accuracy_mean"] <= 1.0
    assert (out / "lfw_roc.png").stat().st_size > 0
