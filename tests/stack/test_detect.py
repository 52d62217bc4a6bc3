"""POST /api/v1/detect through the real worker: boxes, 5 keypoints, 106 landmarks, head pose and
quality of real photos, without a gallery; and the same per-face fields in recognition results."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageOps

from tests import images
from tests.conftest import enroll, recognize, upload, wait_for_job

pytestmark = pytest.mark.usefixtures("worker")

LEVELS = {"high", "medium", "low"}


def _detect(client, headers, image: bytes, *, query: str = "?wait=30", key: str | None = None, **fields) -> dict:
    extra = {"Idempotency-Key": key} if key else {}
    response = client.post(
        f"/api/v1/detect{query}",
        data={"image": upload(image), **fields},
        headers={**headers, **extra},
        content_type="multipart/form-data",
    )
    assert response.status_code in (200, 202), response.get_json()
    job = response.get_json()
    return job if job.get("status") in ("succeeded", "failed") else wait_for_job(client, headers, job["job_id"])


def _inside(point: list[float], box: list[float], margin: float = 0.0) -> bool:
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    return x1 - dx <= point[0] <= x2 + dx and y1 - dy <= point[1] <= y2 + dy


def _mirrored(data: bytes) -> bytes:
    return images.encode(ImageOps.mirror(Image.open(io.BytesIO(data)).convert("RGB")), quality=95)


def test_detect_describes_every_face_of_a_group_photo_without_a_gallery(client, operator_headers):
    # A fresh operator: its organisation has no gallery at all.
    job = _detect(client, operator_headers, images.group_photo(), landmarks="106")
    assert job["status"] == "succeeded", job
    assert job["type"] == "detect" and job["gallery"] is None
    faces = job["result"]["faces"]
    assert job["result"]["faces_detected"] == len(faces) == 6
    for face in faces:
        box = face["bbox"]
        assert set(face["keypoints"]) == {"left_eye", "right_eye", "nose", "mouth_left", "mouth_right"}
        assert all(_inside(point, box) for point in face["keypoints"].values()), face
        assert face["keypoints"]["left_eye"][0] < face["keypoints"]["right_eye"][0]
        landmarks = face["landmarks_106"]
        assert len(landmarks) == 106
        # The contour of the jaw may reach a little past the detector's box; the face's points lie within.
        assert all(_inside(point, box, margin=0.1) for point in landmarks), face
        assert sum(_inside(point, box) for point in landmarks) >= 100
        assert set(face["pose"]) == {"yaw", "pitch", "roll"}
        assert {"face_size", "det_score", "sharpness", "brightness", "yaw", "pitch", "roll"} <= set(face["quality"])
        assert face["quality_for_recognition"] in LEVELS
        assert 0 < face["quality"]["brightness"] < 255
    # Largest first, as in recognition.
    areas = [(f["bbox"][2] - f["bbox"][0]) * (f["bbox"][3] - f["bbox"][1]) for f in faces]
    assert areas == sorted(areas, reverse=True)


def test_the_yaw_and_roll_signs_follow_a_mirrored_photo_and_the_pitch_does_not(client, operator_headers):
    photo = images.group_photo()
    width = Image.open(io.BytesIO(photo)).width
    plain = _detect(client, operator_headers, photo)["result"]["faces"]
    mirrored = _detect(client, operator_headers, _mirrored(photo))["result"]["faces"]
    assert len(plain) == len(mirrored) == 6

    def centre_x(face: dict) -> float:
        return (face["bbox"][0] + face["bbox"][2]) / 2

    turned = [face for face in plain if abs(face["pose"]["yaw"]) > 15]
    assert turned, [face["pose"] for face in plain]  # t1.jpg has faces turned both ways
    for face in plain:
        twin = min(mirrored, key=lambda other: abs(centre_x(other) - (width - 1 - centre_x(face))))
        # The detector's keypoints move a little on a mirrored photo: the angles agree within its noise.
        if abs(face["pose"]["yaw"]) > 15:
            assert twin["pose"]["yaw"] * face["pose"]["yaw"] < 0, (face["pose"], twin["pose"])
            assert twin["pose"]["yaw"] == pytest.approx(-face["pose"]["yaw"], abs=10)
        if abs(face["pose"]["roll"]) > 10:
            assert twin["pose"]["roll"] == pytest.approx(-face["pose"]["roll"], abs=10)
        # Up and down stay as they are.
        assert twin["pose"]["pitch"] == pytest.approx(face["pose"]["pitch"], abs=10)


def test_detect_without_landmarks_has_keypoints_only_and_a_photo_without_faces_succeeds(client, operator_headers):
    job = _detect(client, operator_headers, images.tom_hanks())
    (face,) = job["result"]["faces"]
    assert "landmarks_106" not in face
    assert abs(face["pose"]["yaw"]) < 30
    empty = _detect(client, operator_headers, images.no_face_photo())
    assert empty["status"] == "succeeded", empty
    assert empty["result"]["faces"] == [] and empty["result"]["faces_detected"] == 0


def test_landmarks_may_come_as_a_query_parameter(client, operator_headers):
    job = _detect(client, operator_headers, images.tom_hanks(), query="?wait=30&landmarks=106")
    assert len(job["result"]["faces"][0]["landmarks_106"]) == 106


def test_detect_refuses_bad_input_with_a_clear_error(client, operator_headers):
    def post(data: dict, query: str = "") -> dict:
        response = client.post(
            f"/api/v1/detect{query}", data=data, headers=operator_headers, content_type="multipart/form-data"
        )
        assert response.status_code == 400, response.get_json()
        return response.get_json()["error"]

    assert "landmarks" in str(post({"image": upload(images.tom_hanks()), "landmarks": "68"}))
    assert "image" in str(post({}))
    conflict = post({"image": upload(images.tom_hanks()), "landmarks": "5"}, "?landmarks=106")
    assert "landmarks" in conflict["message"]


def test_detect_honours_the_idempotency_key(client, operator_headers):
    first = _detect(client, operator_headers, images.tom_hanks(), query="", key="detect-once-1")
    again = client.post(
        "/api/v1/detect",
        data={"image": upload(images.tom_hanks())},
        headers={**operator_headers, "Idempotency-Key": "detect-once-1"},
        content_type="multipart/form-data",
    )
    assert again.get_json()["job_id"] == first["id"]


def test_detect_refuses_a_webhook_the_service_may_not_call(client, operator_headers):
    response = client.post(
        "/api/v1/detect",
        data={"image": upload(images.tom_hanks()), "webhook_url": "http://169.254.169.254/latest"},
        headers=operator_headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 400, response.get_json()


def test_recognition_results_carry_the_same_face_fields(client, operator_headers):
    enrolled = enroll(client, operator_headers, images.tom_hanks(), "Tom Hanks", gallery="detect-fields")
    assert wait_for_job(client, operator_headers, enrolled["job_id"])["status"] == "succeeded"
    job = recognize(client, operator_headers, images.another_photo(images.tom_hanks(), 2.0), gallery="detect-fields")
    (face,) = job["result"]["faces"]
    assert face["matches"][0]["person_id"] == enrolled["person_id"]
    assert all(_inside(point, face["bbox"]) for point in face["keypoints"].values())
    assert set(face["pose"]) == {"yaw", "pitch", "roll"}
    assert face["quality_for_recognition"] in LEVELS
    assert {"brightness", "pitch"} <= set(face["quality"])
