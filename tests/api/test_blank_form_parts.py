"""POST /recognize's optional `source` sent blank (as Swagger UI's "Try it out" and `curl -F source=`
send it) is a field left out, like every other optional form field: the job is accepted. It
answered 500 internal_error before (the length bound was checked against the blank's None)."""

from __future__ import annotations

import pytest

from tests import images
from tests.conftest import enroll, upload


@pytest.mark.parametrize("blank", ["", "   ", "null"])
def test_a_blank_source_is_left_out(client, operator_headers, blank):
    enroll(client, operator_headers, images.tom_hanks(), "Someone")  # a gallery to search
    response = client.post(
        "/api/v1/recognize",
        data={"image": upload(images.group_photo()), "source": blank},
        headers=operator_headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 202, response.get_data(as_text=True)


def test_a_source_over_100_characters_names_the_field(client, operator_headers):
    enroll(client, operator_headers, images.tom_hanks(), "Someone")
    response = client.post(
        "/api/v1/recognize",
        data={"image": upload(images.group_photo()), "source": "x" * 101},
        headers=operator_headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_field" and "source" in error["message"]
