"""`faceapi recognize --draw`: the photo with each face's box and best match drawn on it (Pillow)."""

from __future__ import annotations

from pathlib import Path

from faceapi_client import models

KNOWN = (46, 204, 113)
UNKNOWN = (231, 76, 60)


def draw_faces(photo: str | Path, result: models.RecognizeResult, target: str | Path) -> Path:
    """Write `photo` with every face of `result` boxed and labelled (name and similarity, or
    "unknown"). Boxes are in the pixels of the photo as the service saw it: EXIF orientation
    applied, as it is here."""
    from PIL import Image, ImageDraw, ImageFont, ImageOps

    with Image.open(photo) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    draw = ImageDraw.Draw(image)
    side = max(image.size)
    width = max(2, side // 300)
    try:
        font = ImageFont.load_default(size=max(12, side // 45))
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    for face in result.faces:
        x1, y1, x2, y2 = (float(v) for v in face.bbox)
        best = face.best
        colour = KNOWN if best else UNKNOWN
        label = f"{best.name} {best.similarity:.2f}" if best else "unknown"
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=width)
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        text_w, text_h = right - left, bottom - top
        pad = max(2, width)
        label_top = y1 - text_h - 2 * pad if y1 - text_h - 2 * pad >= 0 else y2
        draw.rectangle((x1, label_top, x1 + text_w + 2 * pad, label_top + text_h + 2 * pad), fill=colour)
        draw.text((x1 + pad - left, label_top + pad - top), label, fill=(255, 255, 255), font=font)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = target.suffix.lower()
    fmt = {".png": "PNG", ".webp": "WEBP"}.get(suffix, "JPEG")
    image.save(target, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return target
