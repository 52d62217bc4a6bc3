"""The face engine on its own: the detector input size follows the photo's size."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from config import get_settings
from domain.images import decode, decode_bgr
from domain.timing import StageTimer
from tests import images
from workers.engine import ACCELERATOR_EMBED_BATCH, CPU_EMBED_BATCH, FaceEngine, crop_scale, embed_batch


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((250, 250, 3), (320, 320)),  # LFW-sized: never below DET_SIZE_MIN
        ((400, 300, 3), (320, 416)),  # (width, height), each rounded up to a multiple of 32
        ((480, 640, 3), (640, 480)),  # the photo's aspect, not a square letterbox
        ((1300, 867, 3), (448, 640)),  # a 2:3 portrait: 448 x 640 (427 rounded up)
        ((3000, 2000, 3), (448, 640)),  # large photos are scaled down to DET_SIZE, as before
        ((2000, 20, 3), (32, 640)),  # never narrower than the detector's coarsest stride
    ],
)
def test_detector_input_shape_follows_the_photo(shape, expected):
    engine = SimpleNamespace(settings=SimpleNamespace(det_size=640, det_size_min=320))
    assert FaceEngine.detector_input_shape(engine, shape) == expected


def test_det_size_min_equal_to_det_size_turns_the_adaptation_off():
    engine = SimpleNamespace(settings=SimpleNamespace(det_size=640, det_size_min=640))
    assert FaceEngine.detector_input_shape(engine, (250, 250, 3)) == (640, 640)


@pytest.fixture(scope="module")
def engines():
    settings = get_settings()
    return FaceEngine(settings), FaceEngine(settings.model_copy(update={"det_size_min": settings.det_size}))


def test_a_small_photo_gets_the_same_face_at_its_own_size_as_at_640(engines):
    adaptive, fixed = engines
    bgr = decode_bgr(images.another_photo(images.tom_hanks(), scale=0.5))
    assert max(bgr.shape[:2]) < 320
    small, large = adaptive.analyze(bgr), fixed.analyze(bgr)
    assert len(small) == len(large) == 1
    assert np.allclose(small[0].bbox, large[0].bbox, atol=max(bgr.shape[:2]) * 0.05)
    assert float(small[0].embedding @ large[0].embedding) > 0.9  # the same face, aligned alike


def test_group_photo_still_finds_all_six_faces(engines):
    adaptive, _ = engines
    assert len(adaptive.analyze(decode_bgr(images.group_photo()))) == 6


# Large photos are decoded at a reduced scale (domain.images.decode, workers.pipeline._analyze):
# the results must be those of a full decode, in the full photo's pixels.


def _enlarged(data: bytes, factor: int, orientation: int = 1) -> bytes:
    """The photo enlarged `factor` times, stored turned as a camera would for `orientation` 1 or 6."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image = image.resize((image.width * factor, image.height * factor), Image.BICUBIC)
    exif = Image.Exif()
    if orientation == 6:  # stored turned left; "rotate 90 clockwise to view"
        image, exif[0x0112] = image.transpose(Image.Transpose.ROTATE_90), 6
    return images.encode(image, quality=92, exif=exif)


def _on_canvas(data: bytes, size: tuple[int, int]) -> bytes:
    """The photo at its own size in the top-left corner of a larger gray one."""
    canvas = Image.new("RGB", size, (128, 128, 128))
    canvas.paste(Image.open(io.BytesIO(data)).convert("RGB"))
    return images.encode(canvas, quality=92)


def _analyze(engine: FaceEngine, data: bytes) -> list:
    """The worker's decode, detect and embed steps. Imported here, not at the top: importing the
    pipeline builds the Celery app, which must not read the settings before the test run sets them."""
    from workers.pipeline import _analyze as analyze

    return analyze(engine, data, StageTimer())


def _matched(old: list, new: list) -> list[tuple]:
    """Pairs each old face with the new face whose box centre is nearest."""

    def centre(face):
        return np.array([(face.bbox[0] + face.bbox[2]) / 2, (face.bbox[1] + face.bbox[3]) / 2])

    return [(face, min(new, key=lambda other: np.linalg.norm(centre(other) - centre(face)))) for face in old]


def _assert_same_faces(old: list, new: list, min_cosine: float) -> None:
    assert len(new) == len(old)
    for before, after in _matched(old, new):
        size = before.quality["face_size"]
        assert np.allclose(after.bbox, before.bbox, atol=0.03 * size), (before.bbox, after.bbox)
        assert np.allclose(after.kps, before.kps, atol=0.04 * size)
        assert abs(after.quality["face_size"] - size) < 0.06 * size  # the gate's pixels are the photo's
        assert float(after.embedding @ before.embedding) > min_cosine


@pytest.mark.parametrize("orientation", [1, 6])
def test_a_large_photo_is_decoded_reduced_and_reported_in_its_own_pixels(engines, orientation):
    adaptive, _ = engines
    data = _enlarged(images.group_photo(), 4, orientation)  # 5120x3544, faces ~400 px
    assert decode(data, min_long_side=adaptive.decode_long_side()).scale == 4
    old = adaptive.analyze(decode_bgr(data))
    new = _analyze(adaptive, data)
    assert len(old) == 6
    _assert_same_faces(old, new, min_cosine=0.97)


def test_a_face_too_small_in_the_reduced_photo_is_cropped_from_a_finer_decode(engines):
    adaptive, _ = engines
    data = _on_canvas(images.group_photo(), (2560, 1772))  # decoded at 1/2: faces ~50 px there
    decoded = decode(data, min_long_side=adaptive.decode_long_side())
    faces = adaptive.detect(decoded.bgr, scale=decoded.scale)
    assert decoded.scale == 2 and crop_scale(faces, decoded.scale) == 1
    old = adaptive.analyze(decode_bgr(data))
    new = _analyze(adaptive, data)
    _assert_same_faces(old, new, min_cosine=0.95)
    for before, after in _matched(old, new):  # cropped from 50 px faces, it would be a third
        assert after.quality["sharpness"] > 0.85 * before.quality["sharpness"]


def test_crop_scale_keeps_every_face_large_enough():
    def face(side: float):
        return SimpleNamespace(bbox=[0.0, 0.0, side, side * 1.3])

    assert crop_scale([face(400)], 4) == 4  # 100 px at 1/4
    assert crop_scale([face(400), face(300)], 4) == 2  # 75 px at 1/4, 150 at 1/2
    assert crop_scale([face(30)], 4) == 1  # a tiny face gets every pixel there is
    assert crop_scale([], 8) == 8


def test_the_recognizer_call_size_follows_the_provider():
    assert embed_batch(["CPUExecutionProvider"]) == CPU_EMBED_BATCH < ACCELERATOR_EMBED_BATCH
    assert embed_batch(["CUDAExecutionProvider", "CPUExecutionProvider"]) == ACCELERATOR_EMBED_BATCH
    assert embed_batch(["OpenVINOExecutionProvider"]) == ACCELERATOR_EMBED_BATCH


def test_faces_embedded_in_several_recognizer_calls_get_the_embeddings_of_one_call(engines):
    """A group photo's six faces on the CPU go through calls of CPU_EMBED_BATCH: each face gets the
    embedding, crop and quality it gets in one call of all six."""
    engine, _ = engines
    bgr = decode_bgr(images.group_photo())
    faces = engine.detect(bgr)
    crops = engine.align(bgr, faces)
    assert len(faces) > CPU_EMBED_BATCH and embed_batch(engine.providers) == CPU_EMBED_BATCH
    engine.embed_aligned(faces, crops)
    at_once = np.stack([v / np.linalg.norm(v) for v in engine.recognizer.get_feat(crops).astype(np.float32)])
    assert np.allclose(np.stack([face.embedding for face in faces]), at_once, atol=1e-5)
    assert all(face.crop is crop and face.quality is not None for face, crop in zip(faces, crops, strict=True))
