"""Sampling profiles of the running stack with py-spy: where each process role spends its CPU.

`bench.service --profile-clients N` records every web and worker process while the level with
N clients runs, then summarises the samples here. Only samples that hold the GIL are kept
(`--gil`): py-spy's idle detection counted threads blocked in socket reads as busy, so without
it the profile measured waiting. A sample is therefore a moment of Python work; native code
that releases the GIL (onnxruntime's inference) is left out.

Each sample's innermost frame is charged to the component its file belongs to (onnxruntime,
SQLAlchemy, Celery, our own packages, ...), and each of our own functions is charged for every
sample it is on the stack of (inclusive time). Raw collapsed stacks are kept next to the
summary (`<output>_profile_<role>.txt`) for flame graphs (e.g. speedscope.app).
"""

from __future__ import annotations

import collections
import logging
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("bench.profile")

OUR_PACKAGES = ("web", "workers", "domain", "config", "stack")
# The first matching fragment of a frame's file path names its component.
COMPONENTS = (
    ("onnxruntime", "onnxruntime"),
    ("insightface", "insightface (detector/recognizer pre- and post-processing)"),
    ("cv2", "opencv"),
    ("numpy", "numpy"),
    ("PIL", "pillow"),
    ("sqlalchemy", "sqlalchemy"),
    ("psycopg", "psycopg"),
    ("pgvector", "pgvector client"),
    ("celery", "celery"),
    ("kombu", "kombu"),
    ("billiard", "billiard (prefork pool)"),
    ("redis", "redis client"),
    ("gunicorn", "gunicorn"),
    ("werkzeug", "werkzeug"),
    ("flask_limiter", "flask-limiter"),
    ("flask_jwt_extended", "flask-jwt-extended"),
    ("jwt", "pyjwt"),
    ("flask", "flask"),
    ("marshmallow", "marshmallow"),
    ("json", "json"),
    ("logging", "logging"),
)


def py_spy() -> str | None:
    """py-spy on PATH, or next to this interpreter (a virtualenv's bin/)."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


class Recorder:
    """py-spy record for each pid, stopped with SIGINT (py-spy then writes its file)."""

    def __init__(self, pids_by_role: dict[str, list[int]], out_dir: Path, rate: int = 100):
        exe = py_spy()
        if exe is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        self.files: dict[str, list[Path]] = collections.defaultdict(list)
        self.procs: list[subprocess.Popen] = []
        out_dir.mkdir(parents=True, exist_ok=True)
        for role, pids in pids_by_role.items():
            for pid in pids:
                path = out_dir / f"{role}_{pid}.txt"
                cmd = [exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw"]
                cmd += ["--gil", "--full-filenames", "--output", str(path)]
                self.procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                self.files[role].append(path)

    def stop(self) -> dict[str, list[Path]]:
        for proc in self.procs:
            proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        return {role: [p for p in paths if p.exists()] for role, paths in self.files.items()}


def _samples(paths: list[Path]) -> Iterator[tuple[list[str], int]]:
    """(frames outermost first, count) for every line of py-spy's raw (collapsed) files."""
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if stack and count_text.isdigit():
                yield stack.split(";"), int(count_text)


def merge_raw(paths: list[Path], output: Path) -> None:
    """One collapsed-stack file (for flame graphs) out of several processes' files."""
    counts: collections.Counter[str] = collections.Counter()
    for frames, count in _samples(paths):
        counts[";".join(map(_short_frame, frames))] += count
    output.write_text("".join(f"{stack} {count}\n" for stack, count in counts.most_common()))


def _short_frame(frame: str) -> str:
    """'f (/x/site-packages/pkg/mod.py:12)' -> 'f (pkg/mod.py)': fewer distinct stacks to keep."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3.11/", str(Path(__file__).resolve().parent.parent) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})" if where else name


def component_of(frame: str) -> str:
    """'function (path/to/file.py:123)' -> the component that owns the file."""
    path = frame[frame.rfind("(") + 1 :] if "(" in frame else frame
    for package in OUR_PACKAGES:
        if f"/{package}/" in path and "site-packages" not in path:
            return f"ours: {package}"
    for fragment, name in COMPONENTS:
        if f"/{fragment}/" in path or f"/{fragment}." in path:
            return name
    return "python stdlib / other"


def _ours(frame: str) -> str | None:
    """Our own function in a frame, as 'package/module.py:function', or None."""
    if "site-packages" in frame or "(" not in frame:
        return None
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    for package in OUR_PACKAGES:
        marker = f"/{package}/"
        if marker in path:
            return f"{package}/{path.split(marker, 1)[1]}:{name}"
    return None


def summarise(paths: list[Path], top: int = 25) -> dict:
    """Samples by component (innermost frame) and our functions' inclusive share."""
    by_component: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, count in _samples(paths):
        total += count
        by_component[component_of(frames[-1])] += count
        for ours in {f for f in (_ours(fr) for fr in frames) if f}:
            inclusive[ours] += count
    share = lambda c: round(100 * c / total, 1) if total else 0.0  # noqa: E731
    return {
        "samples": total,
        "by_component_pct": {k: share(v) for k, v in by_component.most_common()},
        "our_functions_inclusive_pct": {k: share(v) for k, v in inclusive.most_common(top)},
    }
