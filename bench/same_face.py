"""Where does "the same photo again" end? The cosine similarity of a face with copies of its own
photo (bytes appended, PNG, JPEG re-encoded at 95/75/50, resized) against that of two distinct
photos of one person (LFW genuine pairs), to choose ENROLL_SAME_FACE_SIMILARITY (domain/identity.py).

    python -m bench.same_face --lfw-dir ../shared/datasets/lfw-dev
"""

from __future__ import annotations

import argparse
import io
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import RESULTS_DIR, machine_info, write_json
from bench.lfw import read_pairs
from config import get_settings
from domain.images import decode
from workers.engine import get_face_engine

COPIES_MEASURED = 150  # photos whose copies are embedded (each copy costs an embedding)


def _encoded(data: bytes, fmt: str = "JPEG", quality: int = 90, scale: float = 1.0) -> bytes:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    if scale != 1.0:
        image = image.resize((int(image.width * scale), int(image.height * scale)), Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buffer.getvalue()


COPIES: dict[str, Callable[[bytes], bytes]] = {
    "two_bytes_appended": lambda data: data + b"\x00\x01",
    "png": lambda data: _encoded(data, "PNG"),
    "jpeg_95": lambda data: _encoded(data, quality=95),
    "jpeg_75": lambda data: _encoded(data, quality=75),
    "jpeg_50": lambda data: _encoded(data, quality=50),
    "resized_0.8": lambda data: _encoded(data, scale=0.8),
    "resized_1.5": lambda data: _encoded(data, scale=1.5),
}


def embedding(data: bytes) -> np.ndarray | None:
    """The largest face's embedding, as the service computes it for an enrollment."""
    engine = get_face_engine(get_settings())
    decoded = decode(data, min_long_side=engine.decode_long_side())
    faces = engine.detect(decoded.bgr, 1, scale=decoded.scale)
    if not faces:
        return None
    engine.embed(decoded.bgr, faces, scale=decoded.scale)
    return faces[0].embedding


def _spread(values: list[float]) -> dict:
    array = np.asarray(values)
    return {
        "n": len(array),
        "min": round(float(array.min()), 4),
        "p01": round(float(np.quantile(array, 0.01)), 4),
        "median": round(float(np.median(array)), 4),
        "max": round(float(array.max()), 4),
    }


def measure(lfw_dir: Path) -> dict:
    pairs, _ = read_pairs(lfw_dir / "pairs.txt")
    genuine: list[float] = []
    copies: dict[str, list[float]] = {name: [] for name in COPIES}
    for pair in (p for p in pairs if p.same):
        first, second = (lfw_dir / "images" / pair.a).read_bytes(), (lfw_dir / "images" / pair.b).read_bytes()
        a, b = embedding(first), embedding(second)
        if a is None or b is None:
            continue
        genuine.append(float(a @ b))
        if len(genuine) <= COPIES_MEASURED:
            for name, copy in COPIES.items():
                if (c := embedding(copy(first))) is not None:
                    copies[name].append(float(a @ c))
    scores = np.asarray(genuine)
    return {
        "machine": machine_info(),
        "distinct_photos_of_one_person": {
            **_spread(genuine),
            **{f"at_least_{t}": int((scores >= t).sum()) for t in (0.9, 0.95, 0.98)},
        },
        "copies_of_one_photo": {name: _spread(values) for name, values in copies.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    lfw = os.environ.get("LFW_DIR")
    parser.add_argument("--lfw-dir", type=Path, default=lfw, required=not lfw, help="LFW with pairs.txt (LFW_DIR)")
    args = parser.parse_args()
    result = measure(args.lfw_dir)
    write_json(RESULTS_DIR / "same_face.json", result)
    print(result["distinct_photos_of_one_person"], result["copies_of_one_photo"], sep="\n")


if __name__ == "__main__":
    main()
