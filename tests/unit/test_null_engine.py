"""The benchmark's null engine (bench/null_engine/) is reachable only by the benchmark.

`make bench-ceiling` puts bench/null_engine/ first on PYTHONPATH; nothing the service reads (its
settings, its environment, its code) can select it, and its image does not ship bench/.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from config import Settings

ROOT = Path(__file__).resolve().parents[2]
SERVICE_PACKAGES = ("config", "domain", "jobqueue", "stack", "web", "workers")
PROBE = (
    "import workers.engine, workers.pipeline\n"
    "print(workers.engine.FaceEngine.__name__, workers.pipeline.decode.__name__)"
)
NULL_ENGINE_PATH = str(ROOT / "bench" / "null_engine")


def _run_fresh(script: str, extra_env: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | extra_env
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=99)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _engine_in_fresh_process(extra_env: dict[str, str]) -> str:
    return _run_fresh(PROBE, extra_env)


def test_no_setting_or_environment_variable_selects_the_null_engine() -> None:
    assert not [name for name in Settings.model_fields if "null" in name or "fake" in name or "bench" in name]
    guesses = {"NULL_ENGINE": "1", "FACEAPI_NULL_ENGINE": "1", "BENCH_NULL_ENGINE": "1", "FAKE_ENGINE": "1"}
    assert _engine_in_fresh_process(guesses) == "FaceEngine decode"


def test_only_the_benchmarks_python_path_selects_it() -> None:
    selected = _engine_in_fresh_process({"PYTHONPATH": NULL_ENGINE_PATH})
    assert selected == "NullEngine null_decode"


def test_the_service_never_refers_to_it_and_its_image_leaves_bench_out() -> None:
    for package in SERVICE_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            assert "null_engine" not in text and "sitecustomize" not in text, path
    copied = [line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("COPY ")]
    assert not [source for source in copied if source.startswith("bench")]


def test_the_null_engine_gives_one_fixed_face_a_photo_embedded_by_its_bytes() -> None:
    """What the ceiling's jobs get: a face with every field a result reports, the same photo the
    same embedding (an enrolled photo matches itself), different photos different ones."""
    script = (
        "import numpy as np\n"
        "from workers import engine, pipeline\n"
        "from config import get_settings\n"
        "e = engine.FaceEngine(get_settings())\n"
        "def vector(data):\n"
        "    d = pipeline.decode(data)\n"
        "    faces = e.detect(d.bgr)\n"
        "    e.embed(d.bgr, faces)\n"
        "    assert {'yaw', 'pitch', 'roll', 'sharpness', 'face_size'} <= set(faces[0].quality)\n"
        "    return faces[0].embedding\n"
        "a, b, c = vector(b'photo one'), vector(b'photo one'), vector(b'photo two')\n"
        "print(len(a), float(np.dot(a, b)) > 0.999, abs(float(np.dot(a, c))) < 0.3)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {
        "PYTHONPATH": str(ROOT / "bench" / "null_engine")
    }
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["512", "True", "True"]
