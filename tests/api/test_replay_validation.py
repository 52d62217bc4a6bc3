"""A retry under an Idempotency-Key is validated as its first request was, before the first answer
is replayed: `wait` by the same schema (web/schemas.WaitQuery), with the same error document."""

from __future__ import annotations

import uuid

from tests import images
from tests.conftest import upload


def _enroll(client, headers: dict, key: str, query: str):
    return client.post(
        f"/api/v1/persons{query}",
        data={
            "name": f"Replayed {key[:8]}",
            "consent": "true",
            "image": upload(images.distinct_copy(images.tom_hanks(), key), filename="face.jpg"),
        },
        headers={**headers, "Idempotency-Key": key},
        content_type="multipart/form-data",
    )


def test_a_replay_with_a_bad_wait_is_refused_as_the_first_request_would_be(client, operator_headers):
    key = str(uuid.uuid4())
    first = _enroll(client, operator_headers, key, "")
    assert first.status_code == 202, first.get_data(as_text=True)
    for bad in ("?wait=soon", "?wait=31", "?wait=nan"):
        fresh = _enroll(client, operator_headers, str(uuid.uuid4()), bad)
        replay = _enroll(client, operator_headers, key, bad)
        assert fresh.status_code == replay.status_code == 400, bad
        assert replay.get_json() == fresh.get_json(), bad
        assert "wait" in replay.get_json()["error"]["message"]


def test_a_replay_with_an_unknown_query_parameter_is_refused(client, operator_headers):
    key = str(uuid.uuid4())
    assert _enroll(client, operator_headers, key, "").status_code == 202
    replay = _enroll(client, operator_headers, key, "?wiat=5")
    assert replay.status_code == 400
    assert replay.get_json()["error"]["code"] == "unknown_query_parameter"
    assert "wait" in replay.get_json()["error"]["message"]  # the suggestion
    assert _enroll(client, operator_headers, key, "?wait=0").headers["Idempotent-Replayed"] == "true"
