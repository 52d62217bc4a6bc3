"""How long re-embedding a gallery takes (docs/RECOGNITION.md, "Changing the model"): a gallery of N
faces, each with an aligned 112x112 JPEG crop, embedded again by domain.portability.reembed_gallery
as a worker does, with the shipped recognizer under another name (the same cost as a real switch to a
model of its size; `--int8` takes it quantized instead); the staging (decode + embed + insert) and the
switch (one UPDATE of every face, HNSW included) timed apart, in wall-clock and CPU seconds (the CPU
time of this process, all its threads: on a loaded machine the wall clock says more about the others).
Embedded PostgreSQL in a temporary directory; one process, ORT_THREADS threads (default 2).

    .venv/bin/python -m bench.reembed --faces 2000 [--faces 8000]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

from bench.common import RESULTS_DIR, machine_info, write_json

NEW_MODEL = "w600k_mbf_next"  # the shipped recognizer under another name: a model of the same cost


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _crops(count: int) -> list[bytes]:
    """JPEG crops (quality 90, as enrollment keeps them) of the shipped aligned face, each a little different."""
    from tests.images import tom_hanks

    base = np.asarray(Image.open(io.BytesIO(tom_hanks())).convert("RGB").resize((112, 112)), dtype=np.int16)
    rng = np.random.default_rng(0)
    crops = []
    for _ in range(count):
        noisy = (base + rng.integers(-6, 7, base.shape)).clip(0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noisy).save(buffer, "JPEG", quality=90)
        crops.append(buffer.getvalue())
    return crops


def _gallery(session, faces: int, model: str) -> uuid.UUID:
    from sqlalchemy import insert

    from domain.jobs import now
    from domain.models import Face, Gallery, Organisation, Person

    organisation, gallery = uuid.uuid4(), uuid.uuid4()
    session.execute(insert(Organisation).values(id=organisation, name="bench"))
    session.execute(insert(Gallery).values(id=gallery, organisation_id=organisation, name="bench", model=model))
    crops = _crops(64)
    rng = np.random.default_rng(1)
    for start in range(0, faces, 1000):
        count = min(1000, faces - start)
        persons = [uuid.uuid4() for _ in range(count)]
        session.execute(
            insert(Person),
            [
                {"id": p, "gallery_id": gallery, "name": f"p{start + i}", "consent_at": now()}
                for i, p in enumerate(persons)
            ],
        )
        vectors = rng.standard_normal((count, 512)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        rows = [
            {
                "id": uuid.uuid4(),
                "person_id": person,
                "gallery_id": gallery,
                "embedding": vector,
                "model": model,
                "det_score": 0.9,
                "bbox": [0, 0, 112, 112],
                "crop": crops[i % len(crops)],
            }
            for i, (person, vector) in enumerate(zip(persons, vectors, strict=True))
        ]
        session.execute(insert(Face), rows)
        session.commit()
    return gallery


def measure(faces: int, pack: Path) -> dict:
    from domain import portability
    from domain.db import session_scope
    from workers.portability import _recognizer, crop_embedder

    with session_scope() as session:
        started = time.perf_counter()
        gallery = _gallery(session, faces, "w600k_mbf")
        loaded = time.perf_counter() - started
    threads = int(os.environ.get("ORT_THREADS") or 2)
    embed = crop_embedder(_recognizer(pack / f"{NEW_MODEL}.onnx", threads))
    timed = {"stage": 0.0, "switch": 0.0, "stage_cpu": 0.0, "switch_cpu": 0.0}
    stage_chunk, switch = portability._stage_chunk, portability._switch

    def timing(name: str, function):
        def timed_call(*args, **kwargs):
            started, cpu = time.perf_counter(), time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                timed[name] += time.perf_counter() - started
                timed[f"{name}_cpu"] += time.process_time() - cpu

        return timed_call

    timed_stage, timed_switch = timing("stage", stage_chunk), timing("switch", switch)

    portability._stage_chunk, portability._switch = timed_stage, timed_switch
    job = SimpleNamespace(id=uuid.uuid4(), gallery_id=gallery, params={})
    try:
        started = time.perf_counter()
        with session_scope() as session:
            result = portability.reembed_gallery(session, job, model=NEW_MODEL, embed=embed)
        total = time.perf_counter() - started
    finally:
        portability._stage_chunk, portability._switch = stage_chunk, switch
    assert result["reembedded"] == faces, result
    return {
        "faces": faces,
        "setup_seconds": round(loaded, 1),
        "total_seconds": round(total, 2),
        "stage_seconds": round(timed["stage"], 2),
        "switch_seconds": round(timed["switch"], 2),
        "stage_cpu_seconds": round(timed["stage_cpu"], 2),
        "switch_cpu_seconds (this process; PostgreSQL's own not counted)": round(timed["switch_cpu"], 2),
        "stage_ms_per_face": round(1000 * timed["stage"] / faces, 2),
        "stage_cpu_ms_per_face": round(1000 * timed["stage_cpu"] / faces, 2),
        "switch_ms_per_face": round(1000 * timed["switch"] / faces, 3),
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "ort_threads": threads,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, action="append", help="gallery sizes (default 1000)")
    parser.add_argument("--int8", action="store_true", help="the shipped recognizer quantized to int8 as the new model")
    args = parser.parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="faceapi-bench-reembed-"))
    os.environ.update(DATA_DIR=str(data_dir), EMBEDDED_REDIS_PORT=str(_free_port()), FACEAPI_ENV="test")
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from domain.schema import upgrade
    from stack.embedded import ensure_services
    from workers.engine import bundled_pack_dir

    global NEW_MODEL
    pack = data_dir / "pack"
    pack.mkdir()
    shipped = bundled_pack_dir() / "w600k_mbf.onnx"
    if args.int8:
        NEW_MODEL = "w600k_mbf_int8"
        quantize_dynamic(str(shipped), str(pack / f"{NEW_MODEL}.onnx"), weight_type=QuantType.QInt8)
    else:
        shutil.copy(shipped, pack / f"{NEW_MODEL}.onnx")
    running = ensure_services()
    # Stop the embedded services on SIGTERM too (the `finally` below then runs).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        upgrade()
        rows = [measure(faces, pack) for faces in args.faces or [1000]]
    finally:
        running.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    largest = rows[-1]
    per_face = (largest["stage_seconds"] + largest["switch_seconds"]) / largest["faces"]
    payload = {
        "machine": machine_info(),
        "new_model": NEW_MODEL,
        "runs": rows,
        "extrapolated_100k_minutes_wall": round(per_face * 100_000 / 60, 1),
        "extrapolated_100k_switch_minutes_wall": round(largest["switch_seconds"] / largest["faces"] * 100_000 / 60, 1),
        "note": "linear extrapolation from the largest run; HNSW inserts grow slowly (log) with the index",
    }
    write_json(RESULTS_DIR / f"reembed{'_int8' if args.int8 else ''}.json", payload)
    print(payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
