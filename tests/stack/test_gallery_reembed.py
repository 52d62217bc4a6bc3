"""Changing the recognizer (docs/RECOGNITION.md, "Changing the model"): a second recognizer, derived
at test time (the shipped w600k_mbf quantized to int8: other embeddings, another model name), runs in
a worker of its own while the session's worker takes no jobs. A gallery keeps recognizing with its
old embeddings before and during its re-embedding, and with the new ones after the switch; an
archive of the old model imported there is embedded again from its crops."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from domain.models import Face, FaceReembedding, Gallery
from tests.conftest import ROOT, wait_for_job
from tests.stack.test_gallery_export import best_name, enroll_people, export, imported

pytestmark = pytest.mark.usefixtures("worker")

OLD_MODEL, NEW_MODEL = "w600k_mbf", "w600k_mbf_int8"


@pytest.fixture(scope="module")
def quantized_pack(tmp_path_factory) -> Path:
    """A model pack of the shipped detector and the shipped recognizer quantized to int8."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from workers.engine import bundled_pack_dir

    shipped = bundled_pack_dir()
    pack = tmp_path_factory.mktemp("int8-pack")
    shutil.copy(shipped / "scrfd_500m_bnkps.onnx", pack)
    quantize_dynamic(str(shipped / f"{OLD_MODEL}.onnx"), str(pack / f"{NEW_MODEL}.onnx"), weight_type=QuantType.QInt8)
    return pack


@contextlib.contextmanager
def worker_with_pack(pack: Path, log_path: Path, concurrency: int = 1) -> Iterator[None]:
    """The session's worker stops taking jobs; a worker running `pack` takes them meanwhile."""
    import jobqueue
    from stack.run import worker_command

    control = jobqueue.app().control
    control.cancel_consumer(jobqueue.QUEUE_NAME, reply=True, timeout=5, limit=1)
    time.sleep(2)  # a BRPOP already sent (1 s timeout) may still name the queue
    env = {**os.environ, "MODEL_PACK_DIR": str(pack)}
    command = worker_command(concurrency, f"int8-{uuid.uuid4().hex[:6]}@%h", "--queues", "faceapi", "--without-gossip")
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while b"ready." not in log_path.read_bytes():
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
        control.add_consumer(jobqueue.QUEUE_NAME, reply=True, timeout=5, limit=1)


def recognized(client, headers, gallery: str, people) -> set[str]:
    """The model each recognition used; every held-out photo must be named right."""
    from tests.conftest import recognize

    models = set()
    for name, photo in people:
        job = recognize(client, headers, photo, gallery=gallery)
        assert job["status"] == "succeeded", job
        assert job["result"]["faces"][0]["matches"][0]["name"] == name, job["result"]
        models.add(job["result"]["model"])
    return models


def stage_some(db, gallery_id: uuid.UUID, pack: Path, faces: int) -> None:
    """Part of a re-embedding, as a worker would have done it so far (the switch not yet made)."""
    from domain import portability
    from workers.portability import _recognizer, crop_embedder

    embed = crop_embedder(_recognizer(pack / f"{NEW_MODEL}.onnx", 1))
    portability._stage_chunk(db, gallery_id, NEW_MODEL, embed, faces)
    db.commit()


def test_reembedding_switches_the_gallery_and_recognition_never_stops(
    client, operator_headers, db, quantized_pack, data_dir
):
    people = enroll_people(client, operator_headers, "switching")
    gallery_id = db.execute(select(Gallery.id).where(Gallery.name == "switching")).scalars().all()
    gallery = db.get(Gallery, next(g for g in gallery_id if db.get(Gallery, g).model))
    assert gallery.model == OLD_MODEL
    assert recognized(client, operator_headers, "switching", people) == {OLD_MODEL}
    _, old_archive = export(client, operator_headers, "switching")

    with worker_with_pack(quantized_pack, data_dir / f"int8-worker-{uuid.uuid4().hex[:6]}.log"):
        # Before: the new worker serves the gallery with its old model.
        assert recognized(client, operator_headers, "switching", people) == {OLD_MODEL}
        # During: some faces have their new embedding staged; searches still use the old ones.
        stage_some(db, gallery.id, quantized_pack, 2)
        assert recognized(client, operator_headers, "switching", people) == {OLD_MODEL}

        response = client.post("/api/v1/galleries/switching/reembed", headers=operator_headers)
        assert response.status_code == 202, response.get_json()
        job = wait_for_job(client, operator_headers, response.get_json()["job_id"])
        assert job["status"] == "succeeded", job
        result = job["result"]
        assert (result["previous_model"], result["model"]) == (OLD_MODEL, NEW_MODEL)
        assert result["reembedded"] == result["faces"] == len(people)
        assert result["faces_without_crop"] == []
        assert job["progress"]["done"] == job["progress"]["total"] == len(people)

        # After: the gallery, and every face of it, is of the new model; names are unchanged.
        db.expire_all()
        assert db.get(Gallery, gallery.id).model == NEW_MODEL
        models = db.execute(select(Face.model).where(Face.gallery_id == gallery.id).distinct()).scalars().all()
        assert models == [NEW_MODEL]
        assert db.execute(select(func.count()).where(FaceReembedding.gallery_id == gallery.id)).scalar_one() == 0
        assert recognized(client, operator_headers, "switching", people) == {NEW_MODEL}

        # An archive of the old model, imported here, is embedded again from its crops.
        result = imported(client, operator_headers, "from-old-model", old_archive)
        assert result["model"] == NEW_MODEL
        assert result["faces"]["reembedded"] == len(people) and result["faces"]["added"] == 0
        for name, photo in people:
            assert best_name(client, operator_headers, "from-old-model", photo) == name


def test_faces_without_a_crop_are_reported_and_keep_the_gallery_on_its_model(
    client, operator_headers, db, quantized_pack, data_dir
):
    people = enroll_people(client, operator_headers, "no-crops")
    gallery = next(g for g in db.execute(select(Gallery).where(Gallery.name == "no-crops")).scalars() if g.model)
    cropless = db.execute(select(Face.id).where(Face.gallery_id == gallery.id).limit(1)).scalar_one()
    db.execute(update(Face).where(Face.id == cropless).values(crop=None))  # as enrolled before crops were kept
    db.commit()

    with worker_with_pack(quantized_pack, data_dir / f"int8-worker-{uuid.uuid4().hex[:6]}.log"):
        response = client.post("/api/v1/galleries/no-crops/reembed", headers=operator_headers)
        job = wait_for_job(client, operator_headers, response.get_json()["job_id"])
        assert job["status"] == "failed" and job["error"]["code"] == "faces_without_crop", job
        assert [face["face_id"] for face in job["error"]["faces"]] == [str(cropless)]
        db.expire_all()
        assert db.get(Gallery, gallery.id).model == OLD_MODEL
        assert recognized(client, operator_headers, "no-crops", people) == {OLD_MODEL}

        response = client.post("/api/v1/galleries/no-crops/reembed?skip_missing=true", headers=operator_headers)
        job = wait_for_job(client, operator_headers, response.get_json()["job_id"])
        assert job["status"] == "succeeded", job
        assert [face["face_id"] for face in job["result"]["faces_without_crop"]] == [str(cropless)]
        db.expire_all()
        assert db.get(Gallery, gallery.id).model == NEW_MODEL
        # Never dropped: the face is still stored, with its old embedding.
        assert db.get(Face, cropless).model == OLD_MODEL


def pad(db, gallery_id: uuid.UUID, faces: int) -> None:
    """A person of `faces` faces cut from noise (like nobody), so that a re-embedding takes a while."""
    import io

    import numpy as np
    from PIL import Image

    from domain.jobs import now
    from domain.models import Person

    rng = np.random.default_rng(3)
    person = Person(id=uuid.uuid4(), gallery_id=gallery_id, name="Padding", consent_at=now())
    db.add(person)
    db.flush()
    for index in range(faces):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=90)
        vector = rng.standard_normal(512).astype(np.float32)
        db.add(
            Face(
                person_id=person.id,
                gallery_id=gallery_id,
                source_sha256=f"{index:064x}",
                embedding=vector / np.linalg.norm(vector),
                model=OLD_MODEL,
                det_score=0.9,
                bbox=[0, 0, 112, 112],
                crop=buffer.getvalue(),
            )
        )
    db.commit()


def test_recognition_while_the_reembedding_runs_uses_the_old_model(
    client, operator_headers, db, quantized_pack, data_dir
):
    """Two worker processes: one re-embeds a gallery of 600 faces, the other recognizes meanwhile."""
    people = enroll_people(client, operator_headers, "busy")
    gallery = next(g for g in db.execute(select(Gallery).where(Gallery.name == "busy")).scalars() if g.model)
    pad(db, gallery.id, 600)

    with worker_with_pack(quantized_pack, data_dir / f"int8-worker-{uuid.uuid4().hex[:6]}.log", concurrency=2):
        job_id = client.post("/api/v1/galleries/busy/reembed", headers=operator_headers).get_json()["job_id"]
        deadline = time.monotonic() + 120
        while not (client.get(f"/api/v1/jobs/{job_id}", headers=operator_headers).get_json().get("progress") or {}).get(
            "done"
        ):  # some faces staged: the re-embedding is under way
            assert time.monotonic() < deadline
            time.sleep(0.2)
        during = recognized(client, operator_headers, "busy", people)
        job = client.get(f"/api/v1/jobs/{job_id}", headers=operator_headers).get_json()
        assert job["status"] == "running", "the re-embedding ended before the recognitions: pad the gallery more"
        assert 0 < job["progress"]["done"] < job["progress"]["total"] == 600 + len(people)
        assert during == {OLD_MODEL}

        assert wait_for_job(client, operator_headers, job_id, timeout=600)["status"] == "succeeded"
        assert recognized(client, operator_headers, "busy", people) == {NEW_MODEL}
